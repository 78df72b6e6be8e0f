"""Phase 4 gates: does the teachability predictor predict, and does it beat the cheap alternatives?

Every input is out-of-fold (each snapshot predicted by models that never saw its task: the
cross-validation is grouped by task), and snapshots of one task are not independent, so every
interval is a cluster bootstrap over tasks: a replicate draws the tasks with replacement and keeps
all of a drawn task's snapshots (the draws are one multinomial count matrix, replicates x tasks, so
every statistic below is a few matrix products). Intervals are percentile intervals at level 1 - 2
alpha, so each bound is a one-sided test at alpha.

- `r2_above_target` (gates `r2_U`, `r2_L`): the out-of-fold R2 against the seeds' target; pass when
  the interval lies above it, fail when it lies at or below it.
- `accuracy_lift`: out-of-fold quadrant accuracy minus the better of two baselines on the same
  snapshots: the majority quadrant, and the U-threshold baseline (the true U side, i.e. the true U
  cut at the labeling's threshold, with the majority L side). The baselines' majorities are taken on
  these same snapshots (in-sample, which can only favour them). It is an intersection-union test
  (the predictor must beat each baseline; p is the larger of the two one-sided sign-flip p-values
  over tasks, no multiplicity correction needed).
- `beats_entropy`: NDCG@K of the predictor's out-of-fold ranking minus entropy's, at one K fixed in
  advance.

`min_detectable` is the true effect (margin above the threshold for R2, lift for the paired gates)
that the gate passes with power 0.8 at this n: (z_{1-alpha} + z_{0.8}) x the bootstrap standard
error (for the sign-flip test, with its null spread widened by the effect itself:
`sign_flip_min_detectable`). `n_needed` (snapshots, at this many a task) scales the standard error
as 1 / sqrt(n).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm, permutation_test

from teachable.gates.core import (
    FAIL,
    INCONCLUSIVE,
    N_PERMUTATIONS,
    NOT_APPLICABLE,
    PASS,
    POWER,
    above_threshold,
    min_detectable_difference,
    verdict,
)
from teachable.gates.paired import n_needed as scaled_n_needed
from teachable.labeling.quadrants import QUADRANTS

CHUNK = 256  # bootstrap replicates per block in the NDCG bootstrap (bounds memory at paper scale)


def _task_index(groups) -> tuple[np.ndarray, int]:
    _, index = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    return index, int(index.max()) + 1 if len(index) else 0


def cluster_weights(n_tasks: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_tasks) counts: how often each task is drawn in each cluster-bootstrap
    replicate."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_tasks, np.full(n_tasks, 1.0 / n_tasks), size=n_resamples)


def _per_task(values, index: np.ndarray, n_tasks: int) -> np.ndarray:
    return np.bincount(index, weights=np.asarray(values, dtype=float), minlength=n_tasks)


def _percentile(samples: np.ndarray, alpha: float) -> list[float]:
    samples = samples[np.isfinite(samples)]
    return (
        [float(q) for q in np.quantile(samples, [alpha, 1 - alpha])]
        if len(samples)
        else [None, None]
    )


def _paired_status(p_value: float, ci_high: float | None, alpha: float) -> str:
    """pass: p < alpha; fail: the interval's upper bound is at or below 0 (no gain); else
    inconclusive."""
    if p_value < alpha:
        return PASS
    return FAIL if ci_high is not None and ci_high <= 0 else INCONCLUSIVE


def _bootstrap_p(samples: np.ndarray, at_or_below: float) -> float:
    """Share of replicates at or below a value, counting the observed sample as one (the percentile
    interval's p)."""
    samples = samples[np.isfinite(samples)]
    return float((1 + np.sum(samples <= at_or_below)) / (1 + len(samples)))


def r2_above_target(
    truth,
    predicted,
    groups,
    target: float,
    alpha: float,
    seed: int,
    n_resamples: int = N_PERMUTATIONS,
) -> dict:
    """Is the out-of-fold R2 above `target`? Cluster-bootstrap percentile interval at 1 - 2 alpha;
    `above_threshold`: pass when the interval lies above the target, fail when at or below, else
    inconclusive. p_value: the bootstrap share of R2 at or below the target. n_needed: snapshots (at
    this many a task) for the interval to clear the target on the estimate's side with power 0.8,
    when inconclusive."""
    y, yhat = np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float)
    n = len(y)
    index, n_tasks = _task_index(groups)
    detail = dict(threshold=target, n_tasks=n_tasks, ci_level=1 - 2 * alpha)
    if n_tasks < 2 or n < 3 or np.ptp(y) == 0:
        return verdict(
            "r2_out_of_fold",
            None,
            None,
            None,
            alpha,
            NOT_APPLICABLE,
            n,
            **detail,
            why="fewer than 2 tasks or 3 snapshots, or a constant target",
        )
    r2 = 1 - np.sum((y - yhat) ** 2) / np.sum((y - y.mean()) ** 2)
    per_task = np.stack(
        [_per_task(v, index, n_tasks) for v in (np.ones(n), y, y**2, (y - yhat) ** 2)], axis=1
    )
    count, total, squares, residual = (cluster_weights(n_tasks, n_resamples, seed) @ per_task).T
    spread = squares - total**2 / count
    with np.errstate(divide="ignore", invalid="ignore"):
        replicates = np.where(spread > 1e-12 * squares, 1 - residual / spread, np.nan)
    ci = _percentile(replicates, alpha)
    se = float(np.nanstd(replicates, ddof=1))
    status = INCONCLUSIVE if ci[0] is None else above_threshold(ci, target)
    gap = abs(r2 - target)
    n_needed = scaled_n_needed(se, n, gap, alpha) if status == INCONCLUSIVE else None
    return verdict(
        "r2_out_of_fold",
        r2,
        ci,
        _bootstrap_p(replicates, target),
        alpha,
        status,
        n,
        **detail,
        half_width=None if ci[0] is None else (ci[1] - ci[0]) / 2,
        se=se,
        min_detectable=min_detectable_difference(se, alpha),
        n_needed=n_needed,
    )


def _sides(quadrants) -> tuple[np.ndarray, np.ndarray]:
    """(high U, high L) of each quadrant name (Q1 high/high, Q2 high/low, Q3 low/low, Q4
    low/high)."""
    names = np.asarray(quadrants).astype(str)
    unknown = set(names) - set(QUADRANTS)
    if unknown:
        raise ValueError(f"unknown quadrant names {sorted(unknown)} (expected {QUADRANTS})")
    return np.isin(names, QUADRANTS[:2]), np.isin(names, (QUADRANTS[0], QUADRANTS[3]))


def majority_baseline(quadrants) -> np.ndarray:
    """Every snapshot predicted as the most frequent true quadrant (ties: the first name in sorted
    order)."""
    names, counts = np.unique(np.asarray(quadrants).astype(str), return_counts=True)
    return np.full(len(quadrants), names[np.argmax(counts)], dtype=object)


def u_threshold_baseline(quadrants) -> np.ndarray:
    """Each snapshot's true U side (its U cut at the labeling's U threshold, which is what put it in
    Q1/Q2 or Q3/Q4) with the majority L side of these snapshots (high when strictly more are high
    than low): the quadrant a predictor that knew U exactly and nothing about leverage would say."""
    high_u, high_l = _sides(quadrants)
    majority_high = 2 * int(high_l.sum()) > len(high_l)
    names = np.array([[QUADRANTS[2], QUADRANTS[3]], [QUADRANTS[1], QUADRANTS[0]]], dtype=object)
    return names[high_u.astype(int), int(majority_high)]


def sign_flip_min_detectable(
    se: float, concentration: float, alpha: float, power: float = POWER
) -> float:
    """The mean paired difference a one-sided sign-flip test over tasks detects with `power`. Its
    null spread is the root mean square of the per-task differences, which a true difference d
    inflates to sqrt(se^2 + concentration d^2) (concentration = sum of squared task sizes / n^2, 1 /
    tasks when equal), so d solves d = z_{1-alpha} sqrt(se^2 + c d^2) + z_power se."""
    a, b = norm.ppf(1 - alpha), norm.ppf(power) * se
    shrink = 1 - a * a * concentration
    if shrink <= 0:
        return math.inf
    return float((b + math.sqrt(b * b - shrink * (b * b - a * a * se * se))) / shrink)


def _sign_flip_p(
    mine: np.ndarray, theirs: np.ndarray, n: int, seed: int, n_resamples: int
) -> float:
    """One-sided p of a positive paired difference: the per-task correct counts of the two methods
    swapped at random within each task (exact when there are fewer sign patterns than resamples)."""
    if np.array_equal(mine, theirs):
        return 1.0
    result = permutation_test(
        (mine, theirs),
        lambda a, b, axis=-1: (a.sum(axis=axis) - b.sum(axis=axis)) / n,
        permutation_type="samples",
        alternative="greater",
        n_resamples=n_resamples,
        vectorized=True,
        random_state=seed,
    )
    return float(result.pvalue)


def accuracy_lift(
    truth,
    predicted,
    groups,
    alpha: float,
    seed: int,
    target_accuracy: float,
    n_resamples: int = N_PERMUTATIONS,
) -> dict:
    """Does the out-of-fold quadrant prediction beat both baselines (majority quadrant, U-threshold)
    on the same snapshots? Statistic: accuracy minus the better baseline's. Interval: cluster
    bootstrap (the minimum of the two lifts in each replicate). p: the larger of the two one-sided
    sign-flip p-values over tasks (intersection-union test). pass: p < alpha; fail: the upper bound
    <= 0; else inconclusive, with the snapshots the observed lift would need for power 0.8."""
    truth = np.asarray(truth).astype(str)
    predicted = np.asarray(predicted).astype(str)
    n = len(truth)
    index, n_tasks = _task_index(groups)
    detail = dict(
        threshold=0.0, n_tasks=n_tasks, ci_level=1 - 2 * alpha, target_accuracy=target_accuracy
    )
    if n_tasks < 2:
        return verdict(
            "accuracy_minus_best_baseline",
            None,
            None,
            None,
            alpha,
            NOT_APPLICABLE,
            n,
            **detail,
            why="fewer than 2 tasks",
        )
    correct = {
        "predictor": predicted == truth,
        "majority": majority_baseline(truth) == truth,
        "U_threshold": u_threshold_baseline(truth) == truth,
    }
    accuracy = {name: float(c.mean()) for name, c in correct.items()}
    per_task = {name: _per_task(c, index, n_tasks) for name, c in correct.items()}
    sizes = _per_task(np.ones(n), index, n_tasks)
    weights = cluster_weights(n_tasks, n_resamples, seed)
    size = weights @ sizes
    boot = {name: weights @ counts / size for name, counts in per_task.items()}
    lifts = np.minimum(
        boot["predictor"] - boot["majority"], boot["predictor"] - boot["U_threshold"]
    )
    best = max(("U_threshold", "majority"), key=accuracy.get)
    lift = accuracy["predictor"] - accuracy[best]
    p = {
        name: _sign_flip_p(per_task["predictor"], per_task[name], n, seed, n_resamples)
        for name in ("majority", "U_threshold")
    }
    p_value = max(p.values())
    ci = _percentile(lifts, alpha)
    se = float(np.std(boot["predictor"] - boot[best], ddof=1))
    concentration = float(np.sum(sizes**2) / n**2)
    status = _paired_status(p_value, ci[1], alpha)
    n_needed = None
    # n times g: se^2 and the concentration both shrink by g
    if status == INCONCLUSIVE and lift > 0 and se > 0:
        root_g = (
            norm.ppf(1 - alpha) * math.sqrt(se**2 + concentration * lift**2) + norm.ppf(POWER) * se
        ) / lift
        n_needed = math.ceil(n * root_g**2)
    return verdict(
        "accuracy_minus_best_baseline",
        lift,
        ci,
        p_value,
        alpha,
        status,
        n,
        **detail,
        accuracy=accuracy["predictor"],
        accuracy_ci=_percentile(boot["predictor"], alpha),
        baseline_majority=accuracy["majority"],
        baseline_U_threshold=accuracy["U_threshold"],
        best_baseline=best,
        p_vs_majority=p["majority"],
        p_vs_U_threshold=p["U_threshold"],
        se=se,
        min_detectable=sign_flip_min_detectable(se, concentration, alpha),
        n_needed=n_needed,
    )


def tie_groups(scores: np.ndarray, weights: np.ndarray, values: np.ndarray):
    """Items ranked by `scores` (descending, stable) in groups of tied scores, for each row b of
    `weights` (item i counted weights[b, i] times): each group's count, its sum of `values`, and the
    count ranked up to its end (the shared step of the weighted ranking metrics, so ties are treated
    alike in all of them)."""
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    counts = np.add.reduceat(weights[:, order], starts, axis=1)
    totals = np.add.reduceat(weights[:, order] * values[order], starts, axis=1)
    return counts, totals, np.cumsum(counts, axis=1)


def weighted_ndcg(gains, scores, k: int, weights) -> np.ndarray:
    """NDCG@k of ranking by `scores` when item i appears weights[b, i] times (integer counts), for
    each row b of `weights` (a row of ones gives `sklearn.metrics.ndcg_score`). Tied scores share
    the mean discount of the positions they occupy, as sklearn does (`ignore_ties=False`); 0 where
    every gain is 0."""
    gains, scores = np.asarray(gains, dtype=float), np.asarray(scores, dtype=float)
    weights = np.atleast_2d(np.asarray(weights)).astype(np.int64)
    cumulative = np.concatenate([[0.0], np.cumsum(1 / np.log2(np.arange(k) + 2))])

    def dcg(ranking: np.ndarray) -> np.ndarray:
        counts, total_gain, end = tie_groups(ranking, weights, gains)
        discount = cumulative[np.minimum(end, k)] - cumulative[np.minimum(end - counts, k)]
        return (
            np.divide(total_gain, counts, out=np.zeros_like(total_gain), where=counts > 0)
            * discount
        ).sum(1)

    ideal = dcg(gains)
    return np.divide(dcg(scores), ideal, out=np.zeros_like(ideal), where=ideal > 0)


def beats_entropy(
    elp,
    predicted,
    uncertainty,
    groups,
    ks: list[int],
    alpha: float,
    seed: int,
    n_resamples: int = N_PERMUTATIONS,
) -> dict:
    """Does ranking by the predictor's out-of-fold ELP_net beat ranking by entropy (U)? Statistic:
    NDCG@K of the predictor minus entropy's, gains max(ELP_net, 0), at K = the largest of `ks` not
    above the number of snapshots (fixed before looking at the scores). Interval: cluster bootstrap
    over tasks; p: the bootstrap share of differences at or below 0. pass: p < alpha; fail: the
    upper bound <= 0; else inconclusive.
    NDCG@K at a fixed K changes meaning with the pool's size, so no n_needed is extrapolated."""
    gains = np.maximum(np.asarray(elp, dtype=float), 0.0)
    predicted, uncertainty = (
        np.asarray(predicted, dtype=float),
        np.asarray(uncertainty, dtype=float),
    )
    n = len(gains)
    index, n_tasks = _task_index(groups)
    k = max((k for k in ks if k <= n), default=None)
    detail = dict(
        threshold=0.0,
        k=k,
        k_rule="the largest K in predictor.ks not above the number of snapshots",
        n_tasks=n_tasks,
        ci_level=1 - 2 * alpha,
    )
    if k is None or n_tasks < 2 or not (gains > 0).any():
        return verdict(
            "ndcg_predictor_minus_entropy",
            None,
            None,
            None,
            alpha,
            NOT_APPLICABLE,
            n,
            **detail,
            why="no K in predictor.ks at or below the number of snapshots, fewer than 2 tasks, "
            "or no snapshot with ELP_net > 0",
        )
    ones = np.ones((1, n), dtype=np.int64)
    ndcg_predictor, ndcg_entropy = (
        float(weighted_ndcg(gains, s, k, ones)[0]) for s in (predicted, uncertainty)
    )
    tasks = cluster_weights(n_tasks, n_resamples, seed)
    differences = np.concatenate(
        [
            weighted_ndcg(gains, predicted, k, block) - weighted_ndcg(gains, uncertainty, k, block)
            for block in (
                tasks[start : start + CHUNK][:, index] for start in range(0, n_resamples, CHUNK)
            )
        ]
    )
    difference = ndcg_predictor - ndcg_entropy
    ci = _percentile(differences, alpha)
    p_value = _bootstrap_p(differences, 0.0)
    se = float(np.std(differences, ddof=1))
    return verdict(
        "ndcg_predictor_minus_entropy",
        difference,
        ci,
        p_value,
        alpha,
        _paired_status(p_value, ci[1], alpha),
        n,
        **detail,
        ndcg_predictor=ndcg_predictor,
        ndcg_entropy=ndcg_entropy,
        se=se,
        min_detectable=min_detectable_difference(se, alpha),
        n_needed=None,
        n_needed_why="NDCG@K at a fixed K changes meaning with the pool's size: not extrapolated",
    )
