"""Phase 1B gates: does the CPT's ELP_net predict what a little training does (a rank correlation
with the micro-training gain, given the base's success), and does Q1 gain more than Q2.

Why given p_base: both ELP_net (demo minus placebo) and the gain (trained minus base) are
differences of success rates that share a floor. Where the base never succeeds (p_base = 0) neither
can fall, so a snapshot where nothing helps is a joint zero, and snapshots near the floor or ceiling
move both measures alike whatever the patch and the training do. In the committed pilot Spearman's
rho over all 80 micro-runs was 0.112 and -0.004 without its 33 joint zeros; with independent effects
of patch and training on a shared p_base floor the unconditional test passed 0.086 of the time at
alpha 0.05. So the gate ranks within pre-specified p_base strata (`P_BASE_EDGES`):

- stratified Spearman: within each stratum both measures are ranked (average ranks for ties), scaled
  to rank / (n_h + 1) and centred; rho is the correlation of these scores pooled over the strata
  (each stratum weighs about as its size). A stratum with one member, or where either measure is
  constant, carries no information on the association and is left out: n counts the informative
  pairs only.
- p: a one-sided (rho > 0) permutation test that permutes the gain within strata (exact under "no
  association given the stratum").
- interval: Fisher's z with the Fieller-Hartley-Pearson variance for Spearman's rho, 1.06 / (n -
  H - 2) for n informative pairs in H strata (each stratum's centring costs a degree of freedom, as
  a covariate does in a partial correlation; H = 1 gives the usual 1.06 / (n - 3)), two-sided at 1 -
  2 alpha so its upper bound is a one-sided alpha bound. Power and the n needed use the same
  variance.

A measured correlation is attenuated by the reliabilities of its two measures, so the effect a gate
can see is the target times sqrt(reliability_x * reliability_y).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm, permutation_test, rankdata, spearmanr, ttest_ind
from scipy.stats import t as t_dist

from teachable.gates.core import (
    FAIL,
    INCONCLUSIVE,
    N_PERMUTATIONS,
    NOT_APPLICABLE,
    PASS,
    POWER,
    min_detectable_difference,
    verdict,
)

SPEARMAN_VARIANCE = 1.06  # Fieller, Hartley and Pearson (1957): var(atanh(rho_s)) ~ 1.06 / (n - 3)
# strata of the base's success: {0}, (0, .1], (.1, .3], (.3, .6], (.6, 1]
P_BASE_EDGES = (0.0, 0.1, 0.3, 0.6, 1.0)
BATCH = 1000  # permutations / bootstrap draws computed together


def split_half_reliability(first, second, step_up: bool) -> float | None:
    """Pearson correlation of a measure computed on two disjoint halves of its rollouts; `step_up`
    applies Spearman-Brown (the measure uses both halves). None when a half is constant."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    r = float(np.corrcoef(a, b)[0, 1])
    return 2 * r / (1 + r) if step_up and r > -1 else r


def correlation_power(rho: float, n: int, alpha: float, n_strata: int = 1) -> float:
    """Power of the one-sided test of rho > 0 at level alpha when the true (stratified) Spearman
    correlation is rho, on n informative pairs in `n_strata` strata (Fisher z, variance 1.06 / (n -
    n_strata - 2))."""
    df = n - n_strata - 2
    if df <= 0 or rho <= 0:
        return alpha if rho <= 0 else 0.0
    return float(
        norm.cdf(math.atanh(rho) * math.sqrt(df / SPEARMAN_VARIANCE) - norm.ppf(1 - alpha))
    )


def correlation_n_needed(
    rho: float, alpha: float, power: float = POWER, n_strata: int = 1
) -> int | None:
    """Informative pairs needed for the one-sided test of rho > 0 to reach `power` at true
    correlation rho, in `n_strata` strata (None: never)."""
    if rho <= 0:
        return None
    z = norm.ppf(1 - alpha) + norm.ppf(power)
    return math.ceil(SPEARMAN_VARIANCE * (z / math.atanh(min(rho, 0.999))) ** 2 + n_strata + 2)


def spearman_permutation(x, y, seed: int, n_resamples: int = N_PERMUTATIONS) -> tuple[float, float]:
    """Spearman's rho and its one-sided (rho > 0) permutation p-value, unconditional (no strata)."""
    rx, ry = rankdata(x), rankdata(y)
    ry = (ry - ry.mean()) / ry.std()

    def statistic(a, axis=-1):
        a = (a - a.mean(axis=axis, keepdims=True)) / a.std(axis=axis, keepdims=True)
        return (a * ry).mean(axis=axis)

    result = permutation_test(
        (rx,),
        statistic,
        permutation_type="pairings",
        alternative="greater",
        n_resamples=n_resamples,
        vectorized=True,
        random_state=seed,
    )
    return float(spearmanr(x, y).statistic), float(result.pvalue)


def p_base_strata(p_base) -> np.ndarray:
    """Each snapshot's p_base stratum (0 .. len(P_BASE_EDGES) - 1): {0}, (0, 0.1], (0.1, 0.3],
    (0.3, 0.6], (0.6, 1]."""
    return np.searchsorted(P_BASE_EDGES, np.asarray(p_base, dtype=float), side="left")


def _scores(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Ranks scaled to rank / (n + 1) and centred, along `axis` (one stratum's members)."""
    ranks = rankdata(values, axis=axis) / (values.shape[axis] + 1)
    return ranks - ranks.mean(axis=axis, keepdims=True)


def _stratum_sums(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One stratum's sums of the score products and squares, along the last axis (batched over the
    others)."""
    sx, sy = _scores(x), _scores(y)
    return (sx * sy).sum(-1), (sx**2).sum(-1), (sy**2).sum(-1)


def _pooled(sums: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """Pooled within-stratum correlation from per-stratum sums, over the strata where both measures
    vary."""
    xy, xx, yy = (
        np.sum([np.where((s[1] > 0) & (s[2] > 0), s[k], 0.0) for s in sums], axis=0)
        for k in range(3)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((xx > 0) & (yy > 0), xy / np.sqrt(xx * yy), np.nan)


def informative_strata(x, y, p_base) -> list[np.ndarray]:
    """The members of each p_base stratum that carries information on the association: 2 or more
    members, and neither measure constant within it."""
    x, y, codes = np.asarray(x, dtype=float), np.asarray(y, dtype=float), p_base_strata(p_base)
    groups = [np.flatnonzero(codes == h) for h in np.unique(codes)]
    return [g for g in groups if len(g) >= 2 and np.ptp(x[g]) > 0 and np.ptp(y[g]) > 0]


def stratified_spearman(x, y, p_base) -> dict:
    """The stratified Spearman correlation of x and y given p_base (module docstring): rho, the
    informative pairs n and strata used, and the members of each informative stratum (`groups`)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    groups = informative_strata(x, y, p_base)
    n = int(sum(len(g) for g in groups))
    if not groups:
        return {"rho": None, "n": 0, "n_strata": 0, "groups": groups}
    rho = float(_pooled([_stratum_sums(x[g], y[g]) for g in groups]))
    return {"rho": rho, "n": n, "n_strata": len(groups), "groups": groups}


def stratified_permutation_p(x, y, groups: list[np.ndarray], seed: int, n_resamples: int) -> float:
    """One-sided (rho > 0) p of the stratified Spearman correlation: the gain permuted within each
    stratum (the scores' squares do not change, so the statistic is the sum of score products)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    sx = [_scores(x[g]) for g in groups]
    sy = [_scores(y[g]) for g in groups]
    observed = sum(float((a * b).sum()) for a, b in zip(sx, sy))
    rng = np.random.default_rng(seed)
    exceed = 0
    for size in [min(BATCH, n_resamples - i) for i in range(0, n_resamples, BATCH)]:
        total = np.zeros(size)
        for a, b in zip(sx, sy):
            order = np.argsort(rng.random((size, len(b))), axis=1)
            total += (a[None] * b[order]).sum(axis=1)
        exceed += int((total >= observed - 1e-12).sum())
    return (1 + exceed) / (1 + n_resamples)


def fisher_interval(rho: float, n: int, n_strata: int, confidence: float) -> list[float]:
    """Fisher z interval for a stratified Spearman rho on n informative pairs in `n_strata`
    strata."""
    half = norm.ppf(0.5 + confidence / 2) * math.sqrt(SPEARMAN_VARIANCE / (n - n_strata - 2))
    z = math.atanh(max(min(rho, 0.999999), -0.999999))
    return [math.tanh(z - half), math.tanh(z + half)]


def cpt_validity(
    elp,
    gain,
    p_base,
    reliability_elp: float | None,
    reliability_gain: float | None,
    alpha: float,
    target_rho: float,
    seed: int,
    n_resamples: int = N_PERMUTATIONS,
) -> dict:
    """Does the CPT's ELP_net predict the micro-training gain, given the base's success? The
    stratified Spearman rho (module docstring; strata `P_BASE_EDGES`), one-sided permutation test
    within strata at `alpha`. pass: p < alpha. fail: the Fisher interval's upper bound (one-sided
    alpha) is below the target as the measures can show it (target x sqrt of the two reliabilities),
    i.e. the data rule out a useful correlation. Otherwise inconclusive, with the informative pairs
    the test needs for power 0.8 at that target in as many strata. `p_base=None` (not recorded) puts
    every snapshot in one stratum: the unconditional Spearman test."""
    elp, gain = np.asarray(elp, dtype=float), np.asarray(gain, dtype=float)
    p_base = np.full(len(elp), 0.5) if p_base is None else np.asarray(p_base, dtype=float)
    known = reliability_elp is not None and reliability_gain is not None
    attenuation = (
        math.sqrt(max(0.0, reliability_elp) * max(0.0, reliability_gain)) if known else 1.0
    )
    visible = target_rho * attenuation
    fit = stratified_spearman(elp, gain, p_base)
    n, strata = fit["n"], max(fit["n_strata"], 1)
    detail = dict(
        target_rho=target_rho,
        reliability_elp=reliability_elp,
        reliability_gain=reliability_gain,
        visible_target=visible,
        power=correlation_power(visible, n, alpha, strata),
        n_needed=correlation_n_needed(visible, alpha, n_strata=strata),
        n_strata=fit["n_strata"],
        n_micro_runs=len(elp),
        method="spearman within p_base strata, permutation within strata",
        p_base_edges=list(P_BASE_EDGES),
        ci_level=1 - 2 * alpha,
        strata_sizes={
            int(h): int(c) for h, c in zip(*np.unique(p_base_strata(p_base), return_counts=True))
        },
    )
    if n - strata - 2 < 1:
        return verdict(
            "stratified_spearman_rho",
            None,
            None,
            None,
            alpha,
            NOT_APPLICABLE,
            n,
            **detail,
            why=(
                "fewer than 3 informative micro-runs beyond the p_base strata (a stratum "
                "informs only with 2 or more members whose ELP_net and gain both vary)"
            ),
        )
    rho = fit["rho"]
    p = stratified_permutation_p(elp, gain, fit["groups"], seed, n_resamples)
    ci = fisher_interval(rho, n, strata, 1 - 2 * alpha)
    disattenuated = rho / attenuation if known and attenuation > 0 else None
    status = PASS if p < alpha else FAIL if ci[1] < visible else INCONCLUSIVE
    return verdict(
        "stratified_spearman_rho",
        rho,
        ci,
        p,
        alpha,
        status,
        n,
        **detail,
        unconditional_rho=float(spearmanr(elp, gain).statistic),
        disattenuated_rho=None if disattenuated is None else max(-1.0, min(1.0, disattenuated)),
    )


def _bootstrap_within(groups: list[np.ndarray], size: int, rng) -> list[np.ndarray]:
    """Resampled member indices (size, n_h) of each stratum: snapshots drawn with replacement within
    strata."""
    return [g[rng.integers(0, len(g), (size, len(g)))] for g in groups]


def cpt_vs_leverage(
    elp, l_local, gain, p_base, alpha: float, seed: int, n_resamples: int = N_PERMUTATIONS
) -> dict:
    """Does ELP_net predict the micro-training gain better than L_local does (the seeds' fallback
    when CPT fails)? Both stratified Spearman correlations with the gain (same strata,
    `P_BASE_EDGES`) and their difference, with a paired percentile bootstrap interval at 1 - alpha
    (two-sided): snapshots resampled within their p_base strata, the same draws for both
    correlations. Descriptive, no verdict. Strata with fewer than 2 members are left out of both; in
    a resample, a stratum where a measure is constant adds nothing to that measure's correlation."""
    elp, l_local, gain = (np.asarray(v, dtype=float) for v in (elp, l_local, gain))
    codes = p_base_strata(p_base)
    groups = [g for g in (np.flatnonzero(codes == h) for h in np.unique(codes)) if len(g) >= 2]
    out = {
        "statistic": "rho(ELP_net, gain) - rho(L_local, gain)",
        "value": None,
        "ci": [None, None],
        "level": 1 - alpha,
        "n": int(sum(len(g) for g in groups)),
        "n_strata": len(groups),
        "rho_elp": None,
        "rho_l_local": None,
        "n_resamples": n_resamples,
        "interval": "percentile bootstrap, snapshots resampled within p_base strata (paired)",
        "method": "spearman within p_base strata",
    }
    if not groups:
        return out
    rho = {
        name: float(_pooled([_stratum_sums(v[g], gain[g]) for g in groups]))
        for name, v in (("elp", elp), ("l_local", l_local))
    }
    rng = np.random.default_rng(seed)
    differences = []
    for size in [min(BATCH, n_resamples - i) for i in range(0, n_resamples, BATCH)]:
        picks = _bootstrap_within(groups, size, rng)
        boot = {
            name: _pooled([_stratum_sums(v[p], gain[p]) for p in picks])
            for name, v in (("elp", elp), ("l_local", l_local))
        }
        differences.append(boot["elp"] - boot["l_local"])
    differences = np.concatenate(differences)
    differences = differences[np.isfinite(differences)]
    value = rho["elp"] - rho["l_local"]
    ci = (
        [float(np.quantile(differences, alpha / 2)), float(np.quantile(differences, 1 - alpha / 2))]
        if len(differences) and np.isfinite(value)
        else [None, None]
    )
    return {
        **out,
        "value": value if np.isfinite(value) else None,
        "ci": ci,
        "rho_elp": rho["elp"] if np.isfinite(rho["elp"]) else None,
        "rho_l_local": rho["l_local"] if np.isfinite(rho["l_local"]) else None,
    }


def welch_n_needed(
    sd_a: float, sd_b: float, effect: float, alpha: float, power: float = POWER
) -> int | None:
    """Per-group n at which a one-sided Welch test at `alpha` (equal groups, these sds) finds
    `effect` with `power`: (t_alpha + t_power)^2 (sd_a^2 + sd_b^2) / effect^2, its df (2n - 2 at
    equal sds) iterated to a fixed point."""
    if effect <= 0:
        return None
    n = 2
    for _ in range(50):
        df = max(2 * n - 2, 1)
        wanted = max(
            2,
            math.ceil(
                (t_dist.ppf(1 - alpha, df) + t_dist.ppf(power, df)) ** 2
                * (sd_a**2 + sd_b**2)
                / effect**2
            ),
        )
        if wanted == n:
            break
        n = wanted
    return n


def q1_beats_q2(
    q1_gains,
    q2_gains,
    alpha: float,
    seed: int,
    n_resamples: int = N_PERMUTATIONS,
    min_effect: float = 0.05,
) -> dict:
    """Is the mean micro-training gain higher in Q1 than in Q2? One-sided permutation test of the
    difference in means at `alpha`, with Welch's interval at 1 - 2 alpha (each bound a one-sided
    alpha bound). pass: p < alpha; fail: the upper bound is below `min_effect`, the smallest useful
    difference fixed in advance (pass `gates.min_effect`): the data rule it out, as in every other
    gate; otherwise inconclusive. Reports the minimum detectable difference at this n and the n per
    quadrant a Welch test needs to find `min_effect` with power 0.8 at the observed spreads (never
    from the observed difference: that would be post-hoc power)."""
    a, b = np.asarray(q1_gains, dtype=float), np.asarray(q2_gains, dtype=float)
    n = len(a) + len(b)
    if len(a) < 2 or len(b) < 2:
        return verdict(
            "mean_gain_Q1_minus_Q2",
            None,
            None,
            None,
            alpha,
            NOT_APPLICABLE,
            n,
            threshold=min_effect,
            why="fewer than 2 micro-runs in Q1 or Q2",
        )
    diff = float(a.mean() - b.mean())
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    if se == 0:
        return verdict(
            "mean_gain_Q1_minus_Q2",
            diff,
            [diff, diff],
            None,
            alpha,
            NOT_APPLICABLE,
            n,
            threshold=min_effect,
            why="every gain in Q1 and Q2 is the same",
        )
    p = permutation_test(
        (a, b),
        lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis),
        permutation_type="independent",
        alternative="greater",
        n_resamples=n_resamples,
        vectorized=True,
        random_state=seed,
    ).pvalue
    welch = ttest_ind(a, b, equal_var=False)
    ci = welch.confidence_interval(1 - 2 * alpha)
    mde = min_detectable_difference(se, alpha, df=welch.df)
    status = PASS if p < alpha else FAIL if ci.high < min_effect else INCONCLUSIVE
    return verdict(
        "mean_gain_Q1_minus_Q2",
        diff,
        [ci.low, ci.high],
        p,
        alpha,
        status,
        n,
        threshold=min_effect,
        n_q1=len(a),
        n_q2=len(b),
        mean_q1=a.mean(),
        mean_q2=b.mean(),
        min_detectable_difference=mde,
        n_needed_per_quadrant=welch_n_needed(a.std(ddof=1), b.std(ddof=1), min_effect, alpha),
        ci_level=1 - 2 * alpha,
    )
