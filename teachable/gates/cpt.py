"""Phase 1B gates: does the CPT's ELP_net predict what a little training does (Spearman rho against the
micro-training gain), and does Q1 gain more than Q2.

Power for a correlation uses Fisher's z with the Fieller-Hartley-Pearson variance for Spearman's rho,
1.06 / (n - 3); a measured correlation is attenuated by the reliabilities of its two measures, so the effect a gate
can see is the target times sqrt(reliability_x * reliability_y).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm, permutation_test, rankdata, spearmanr, ttest_ind

from teachable.gates.core import (FAIL, INCONCLUSIVE, N_PERMUTATIONS, NOT_APPLICABLE, PASS, POWER,
                                  min_detectable_difference, verdict)

SPEARMAN_VARIANCE = 1.06  # Fieller, Hartley and Pearson (1957): var(atanh(rho_s)) ~ 1.06 / (n - 3)


def split_half_reliability(first, second, step_up: bool) -> float | None:
    """Pearson correlation of a measure computed on two disjoint halves of its rollouts; `step_up` applies
    Spearman-Brown (the measure uses both halves). None when a half is constant."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    r = float(np.corrcoef(a, b)[0, 1])
    return 2 * r / (1 + r) if step_up and r > -1 else r


def correlation_power(rho: float, n: int, alpha: float) -> float:
    """Power of the one-sided test of rho > 0 at level alpha when the true Spearman correlation is rho."""
    if n <= 3 or rho <= 0:
        return alpha if rho <= 0 else 0.0
    return float(norm.cdf(math.atanh(rho) * math.sqrt((n - 3) / SPEARMAN_VARIANCE) - norm.ppf(1 - alpha)))


def correlation_n_needed(rho: float, alpha: float, power: float = POWER) -> int | None:
    """Pairs needed for the one-sided test of rho > 0 to reach `power` at true correlation rho (None: never)."""
    if rho <= 0:
        return None
    z = norm.ppf(1 - alpha) + norm.ppf(power)
    return math.ceil(SPEARMAN_VARIANCE * (z / math.atanh(min(rho, 0.999))) ** 2 + 3)


def spearman_permutation(x, y, seed: int, n_resamples: int = N_PERMUTATIONS) -> tuple[float, float]:
    """Spearman's rho and its one-sided (rho > 0) permutation p-value."""
    rx, ry = rankdata(x), rankdata(y)
    ry = (ry - ry.mean()) / ry.std()

    def statistic(a, axis=-1):
        a = (a - a.mean(axis=axis, keepdims=True)) / a.std(axis=axis, keepdims=True)
        return (a * ry).mean(axis=axis)

    result = permutation_test((rx,), statistic, permutation_type="pairings", alternative="greater",
                              n_resamples=n_resamples, vectorized=True, random_state=seed)
    return float(spearmanr(x, y).statistic), float(result.pvalue)


def cpt_validity(elp, gain, reliability_elp: float | None, reliability_gain: float | None, alpha: float,
                 target_rho: float, seed: int, n_resamples: int = N_PERMUTATIONS) -> dict:
    """Does the CPT's ELP_net predict the micro-training gain? One-sided permutation test of Spearman rho > 0 at
    `alpha`. pass: p < alpha. fail: the Fisher interval's upper bound is below the target as the measures can show
    it (target x sqrt of the two reliabilities), i.e. the data rule out a useful correlation. Otherwise
    inconclusive, with the pairs the test needs for power 0.8 at the target."""
    n = len(elp)
    known = reliability_elp is not None and reliability_gain is not None
    attenuation = math.sqrt(max(0.0, reliability_elp) * max(0.0, reliability_gain)) if known else 1.0
    visible = target_rho * attenuation
    detail = dict(target_rho=target_rho, reliability_elp=reliability_elp, reliability_gain=reliability_gain,
                  visible_target=visible, power=correlation_power(visible, n, alpha),
                  n_needed=correlation_n_needed(visible, alpha))
    if n < 4 or np.ptp(elp) == 0 or np.ptp(gain) == 0:
        return verdict("spearman_rho", None, None, None, alpha, NOT_APPLICABLE, n, **detail,
                       why="fewer than 4 micro-runs, or a constant ELP_net or gain")
    rho, p = spearman_permutation(elp, gain, seed, n_resamples)
    half = norm.ppf(0.975) * math.sqrt(SPEARMAN_VARIANCE / (n - 3))
    ci = [math.tanh(math.atanh(max(min(rho, 0.999999), -0.999999)) + s * half) for s in (-1, 1)]
    disattenuated = rho / attenuation if known and attenuation > 0 else None
    status = PASS if p < alpha else FAIL if ci[1] < visible else INCONCLUSIVE
    return verdict("spearman_rho", rho, ci, p, alpha, status, n, **detail,
                   disattenuated_rho=None if disattenuated is None else max(-1.0, min(1.0, disattenuated)))


def q1_beats_q2(q1_gains, q2_gains, alpha: float, seed: int, n_resamples: int = N_PERMUTATIONS) -> dict:
    """Is the mean micro-training gain higher in Q1 than in Q2? One-sided permutation test of the difference in
    means at `alpha`, with Welch's 95% interval. pass: p < alpha; fail: the interval lies below 0 (Q2 gains
    more); otherwise inconclusive, with the minimum detectable difference at this n and the n per quadrant that
    the observed difference would need for power 0.8."""
    a, b = np.asarray(q1_gains, dtype=float), np.asarray(q2_gains, dtype=float)
    n = len(a) + len(b)
    if len(a) < 2 or len(b) < 2:
        return verdict("mean_gain_Q1_minus_Q2", None, None, None, alpha, NOT_APPLICABLE, n,
                       why="fewer than 2 micro-runs in Q1 or Q2")
    diff = float(a.mean() - b.mean())
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    if se == 0:
        return verdict("mean_gain_Q1_minus_Q2", diff, [diff, diff], None, alpha, NOT_APPLICABLE, n,
                       why="every gain in Q1 and Q2 is the same")
    p = permutation_test((a, b), lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis),
                         permutation_type="independent", alternative="greater", n_resamples=n_resamples,
                         vectorized=True, random_state=seed).pvalue
    welch = ttest_ind(a, b, equal_var=False)
    ci = welch.confidence_interval(0.95)
    z = norm.ppf(1 - alpha) + norm.ppf(POWER)
    mde = min_detectable_difference(se, alpha, df=welch.df)
    per_group_sd2 = a.var(ddof=1) + b.var(ddof=1)
    n_needed = math.ceil(z**2 * per_group_sd2 / diff**2) if diff > 0 else None
    status = PASS if p < alpha else FAIL if ci.high < 0 else INCONCLUSIVE
    return verdict("mean_gain_Q1_minus_Q2", diff, [ci.low, ci.high], p, alpha, status, n,
                   n_q1=len(a), n_q2=len(b), mean_q1=a.mean(), mean_q2=b.mean(), min_detectable_difference=mde,
                   n_needed_per_quadrant=n_needed)
