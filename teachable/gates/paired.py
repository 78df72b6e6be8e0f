"""Paired comparisons of two models evaluated on the same items with the same sample seeds.

A model's outcomes are an array shaped (training seeds, items, rollouts) of 0/1 successes; two
models compared share the item axis (same episode specs, same seeds). The estimand is the difference
in success averaged over the population of items and over the population of training seeds (a
training seed is a random draw: a replication trains other seeds), so items and training seeds are
both random effects.

- One training seed and one rollout per item on both sides: the exact paired analysis, Tango's score
  interval and the exact McNemar (binomial) p-value on the discordant pairs.
- Otherwise a two-way random-effects analysis (items x training seeds, each side with its own
  seeds). The estimate is the mean per-item difference d_i; its variance is var(d_i) / n (items,
  with each side's seed-by-item and rollout noise averaged in) plus, for each side with S >= 2
  seeds, sigma^2_seed / S, where sigma^2_seed = (MS_seed - MS_residual) / n from that side's seed x
  item table of per-seed item means (truncated at 0). A seed variance from 2-3 seeds has 1-2 degrees
  of freedom, and a normal or Satterthwaite-t interval treats it as firmer than it is: with 2 seeds
  and a seed sd of 0.6 logit their one-sided rejection rates under a true null were 0.10 and 0.073
  (Cochran-Cox's critical values: 0.06). Inference therefore uses a generalized pivotal quantity
  (Weerahandi 1993; Krishnamoorthy and Mathew 2009 for variance components): each mean square is
  replaced by its pivot MS * df / chi^2_df, giving a draw R_V of the estimate's variance, and the
  difference's pivot is delta - Z sqrt(R_V). p_greater = E[Phi(-delta / sqrt(R_V))]; the interval is
  delta -/+ the matching quantile of Z sqrt(R_V). Without a seed component this is Student's t on
  n - 1 degrees of freedom, computed exactly. The pivots come from a fixed generator, so a
  comparison is a pure function of its outcomes. In simulation (tests/test_gates_evaluation.py) the
  one-sided size stays at or below alpha for 2-3 seeds and a seed sd of 0 to 0.6 logit; with 2 seeds
  the test is conservative (one degree of freedom cannot tell a small seed variance from a large
  one), and more seeds buy power.
  `df` is the effective degrees of freedom: the Student t whose quantile at the interval's level
  equals the pivot's, so `min_detectable_difference(se, alpha, df=df)` describes the test that was
  run.
The standard error is floored at what one discordant pair in n gives, so a run with no discordance
at all does not claim a zero-width interval.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr, stdtr, stdtrit
from scipy.stats import binomtest

from teachable.gates.core import POWER, min_detectable_difference
from teachable.labeling.estimates import paired_difference, rate

# draws of each variance pivot; fixed generators give every comparison the same draws
PIVOT_DRAWS = 4000
PIVOT_SEED = 20240
REPLICATE_RUNS = 100  # replicate runs `min_detectable` averages its power over


def as_outcomes(values) -> np.ndarray:
    """A (seeds, items, rollouts) float array from nested lists or a 1-D/2-D array (missing axes get
    size 1)."""
    a = np.asarray(values, dtype=float)
    while a.ndim < 3:
        a = a[None] if a.ndim == 2 else a[None, :, None] if a.ndim == 1 else a.reshape(1, 1, 1)
    return a


def seed_mean_squares(a: np.ndarray) -> tuple[float, float, int, int] | None:
    """One model's two-way (seed x item) analysis of its per-seed item means: (MS_seed, MS_residual,
    seeds, items), with E[MS_seed] = sigma^2_residual + items * sigma^2_seed and E[MS_residual] =
    sigma^2_residual. None with fewer than 2 seeds or 2 items (no seed variance to estimate)."""
    s, n = a.shape[0], a.shape[1]
    if s < 2 or n < 2:
        return None
    m = a.mean(axis=2)  # (seeds, items)
    residual = m - m.mean(axis=1, keepdims=True) - m.mean(axis=0, keepdims=True) + m.mean()
    return (
        float(n * m.mean(axis=1).var(ddof=1)),
        float((residual**2).sum() / ((s - 1) * (n - 1))),
        s,
        n,
    )


def seed_variance(a: np.ndarray) -> float:
    """sigma^2_seed / seeds: what a model's training seeds add to the variance of its mean (0 with
    one seed). The residual is subtracted so the item-to-item noise already counted over items is
    not counted twice."""
    squares = seed_mean_squares(a)
    if squares is None:
        return 0.0
    seed, residual, s, n = squares
    return max(0.0, seed - residual) / (n * s)


@lru_cache(maxsize=256)
def _df_over_chi2(df: int, stream: int) -> np.ndarray:
    """PIVOT_DRAWS draws of df / chi^2_df from a generator fixed by (df, stream): read-only, shared
    by every call."""
    draws = df / np.random.default_rng([PIVOT_SEED, stream, df]).chisquare(df, PIVOT_DRAWS)
    draws.flags.writeable = False
    return draws


def variance_pivot(item_variance: float, n: int, squares: list[tuple]) -> np.ndarray | None:
    """Draws of the generalized pivot of the estimate's variance: item_variance (n-1) / chi^2_{n-1}
    plus, per side with seeds (its `seed_mean_squares`), max(0, MS_seed (S-1) / chi^2_{S-1} - MS_res
    df_res / chi^2_{df_res}) / (n S). None when no side has 2 seeds (the pivot is then exactly
    Student's t on n - 1 df)."""
    if not squares:
        return None
    draws = item_variance * _df_over_chi2(n - 1, 0) if n > 1 else np.zeros(PIVOT_DRAWS)
    for side, (seed, residual, s, items) in enumerate(squares, start=1):
        component = seed * _df_over_chi2(s - 1, 2 * side - 1) - residual * _df_over_chi2(
            (s - 1) * (items - 1), 2 * side
        )
        draws = draws + np.maximum(component, 0.0) / (items * s)
    return draws


def upper_tail(x: float, df: float, scale: np.ndarray | None) -> float:
    """P(T > x) for the standardised pivot T: Student's t on `df`, or the mixture Z * sqrt(R_V) / se
    given as `scale` = se / sqrt(R_V) draws."""
    return float(stdtr(df, -x)) if scale is None else float(ndtr(-x * scale).mean())


def quantile(q: float, df: float, scale: np.ndarray | None) -> float:
    """The standardised pivot's q-quantile (q > 0.5; the pivot is symmetric)."""
    if scale is None:
        return float(stdtrit(df, q))
    high = 1.0
    while upper_tail(high, df, scale) > 1 - q:
        high *= 2
    return brentq(lambda x: upper_tail(x, df, scale) - (1 - q), 0.0, high, xtol=1e-8)


def effective_df(q: float, critical: float) -> float:
    """The Student t degrees of freedom whose q-quantile is `critical` (inf at or below the
    normal's)."""
    if stdtrit(1e7, q) >= critical:
        return math.inf
    return float(
        math.exp(
            brentq(
                lambda log_df: stdtrit(math.exp(log_df), q) - critical,
                math.log(0.05),
                math.log(1e7),
                xtol=1e-6,
            )
        )
    )


def _standard_error(item_variance: float, n: int, squares: list[tuple]) -> float:
    seeds = sum(max(0.0, seed - residual) / (items * s) for seed, residual, s, items in squares)
    return max(math.sqrt(item_variance + seeds), 1.0 / n)


def _reference(
    item_variance: float, n: int, squares: list[tuple]
) -> tuple[float, float, np.ndarray | None]:
    """(se, Student df, scale): the standard error and the standardised pivot's description for
    `upper_tail` and `quantile` (scale None: Student's t on n - 1 df)."""
    se = _standard_error(item_variance, n, squares)
    pivot = variance_pivot(item_variance, n, squares)
    return se, max(n - 1, 1), None if pivot is None else se / np.sqrt(np.maximum(pivot, 1.0 / n**2))


def _fit(a: np.ndarray, b: np.ndarray | None) -> tuple[np.ndarray, float, list[tuple]]:
    """Per-item values (a, or a minus b), their item variance of the mean, and each side's seed mean
    squares."""
    d = a.mean(axis=(0, 2)) - (0.0 if b is None else b.mean(axis=(0, 2)))
    item_variance = float(d.var(ddof=1)) / d.size if d.size > 1 else 0.0
    return (
        d,
        item_variance,
        [q for q in (seed_mean_squares(x) for x in ([a] if b is None else [a, b])) if q],
    )


def random_effects_mean(
    a: np.ndarray, b: np.ndarray | None = None, confidence: float = 0.95
) -> dict:
    """The mean per-item value of a (or of a minus b on the same items) over items, rollouts and
    seeds, with its random-effects standard error, interval at `confidence` (two-sided), p-values
    against 0 and effective degrees of freedom (the module docstring says how)."""
    d, item_variance, squares = _fit(a, b)
    delta = float(d.mean())
    se, df, scale = _reference(item_variance, d.size, squares)
    level = 0.5 + confidence / 2
    critical = quantile(level, df, scale)
    return {
        "delta": delta,
        "ci": [delta - critical * se, delta + critical * se],
        "se": se,
        "df": df if scale is None else effective_df(level, critical),
        "seed_variance": sum(seed_variance(x) for x in ([a] if b is None else [a, b])),
        "p_greater": upper_tail(delta / se, df, scale),
        "p_two_sided": min(1.0, 2 * upper_tail(abs(delta) / se, df, scale)),
    }


def min_detectable(
    a, b=None, alpha: float = 0.05, power: float = POWER, two_sided: bool = False
) -> float | None:
    """The true difference (a minus b, or a's mean) that the test `compare` runs at one-sided
    `alpha` (`alpha` / 2 a side if `two_sided`) detects with probability `power`, for a run like
    this one.

    With training seeds the test's critical value depends on the seeds' mean squares, which vary
    from run to run (with 2 seeds a chi^2 on 1 df): a run whose seeds happen to disagree cannot
    reject, and the formula (t_alpha + t_power) * se at one run's critical value promises power the
    test does not have (0.46-0.55 at a stated 0.8 in simulation). So the power is averaged over
    replicate runs drawn from this run's fitted variance components (items: chi^2_{n-1}; each side's
    seed and residual mean squares: their scaled chi^2), each with the critical value and standard
    error the test would compute; the detectable difference is where that average reaches `power`.
    Without seeds it is (t_alpha + t_power) * se on n - 1 df (Tango/McNemar: the normal)."""
    a = as_outcomes(a)
    b = None if b is None else as_outcomes(b)
    level = alpha / 2 if two_sided else alpha
    n = a.shape[1]
    if n == 0:
        return None
    if b is not None and a.shape[0] == b.shape[0] == 1 and a.shape[2] == b.shape[2] == 1:
        return min_detectable_difference(compare(a, b)["se"], level, power)
    d, item_variance, squares = _fit(a, b)
    se, df, scale = _reference(item_variance, n, squares)
    if scale is None:
        return min_detectable_difference(se, level, power, df)
    rng = np.random.default_rng([PIVOT_SEED, 1])
    runs, draws = REPLICATE_RUNS, PIVOT_DRAWS // 16
    replicate_items = item_variance * rng.chisquare(max(n - 1, 1), runs) / max(n - 1, 1)
    pivots = replicate_items[:, None] * _df_over_chi2(max(n - 1, 1), 0)[None, :draws]
    seed_part = np.zeros(runs)
    for side, (seed, residual, s, m) in enumerate(squares, start=1):
        df_residual = (s - 1) * (m - 1)
        # E[MS_seed] from the fit
        run_seed = max(seed, residual) * rng.chisquare(s - 1, runs) / (s - 1)
        run_residual = residual * rng.chisquare(df_residual, runs) / df_residual
        seed_part += np.maximum(run_seed - run_residual, 0.0) / (m * s)
        pivots += np.maximum(
            run_seed[:, None] * _df_over_chi2(s - 1, 2 * side - 1)[None, :draws]
            - run_residual[:, None] * _df_over_chi2(df_residual, 2 * side)[None, :draws],
            0.0,
        ) / (m * s)
    run_se = np.maximum(np.sqrt(replicate_items + seed_part), 1.0 / n)
    scale = run_se[:, None] / np.sqrt(np.maximum(pivots, 1.0 / n**2))
    low, high = np.zeros(runs), np.full(runs, 256.0)  # each run's critical value, by bisection
    for _ in range(24):
        mid = (low + high) / 2
        above = ndtr(-mid[:, None] * scale).mean(axis=1) > level
        low, high = np.where(above, mid, low), np.where(above, high, mid)
    shifts = (low + high) / 2 * run_se  # per replicate run: the estimate it needs to reject
    true_sd = se
    achieved = lambda delta: float(ndtr((delta - shifts) / true_sd).mean()) - power  # noqa: E731
    high = se
    while achieved(high) < 0:
        high *= 2
    return brentq(achieved, 0.0, high, xtol=1e-8)


def compare(a, b, confidence: float = 0.95) -> dict:
    """Model `a` minus model `b` on the same items: `delta`, its interval `ci` at `confidence`
    (two-sided), the p-values `p_two_sided` and `p_greater` (a > b), the standard error `se`, its
    degrees of freedom `df`, the part of the variance the training seeds add (`seed_variance`),
    `n_items`, and `method`."""
    a, b = as_outcomes(a), as_outcomes(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired comparison over different items: {a.shape[1]} vs {b.shape[1]}")
    n = a.shape[1]
    if n == 0:
        return {
            "delta": None,
            "ci": [None, None],
            "p_two_sided": None,
            "p_greater": None,
            "se": None,
            "df": None,
            "seed_variance": None,
            "n_items": 0,
            "method": "none",
        }
    if a.shape[0] == b.shape[0] == 1 and a.shape[2] == b.shape[2] == 1:
        x, y = a[0, :, 0].astype(bool), b[0, :, 0].astype(bool)
        diff = paired_difference(x, y, confidence)
        gained, lost = int((x & ~y).sum()), int((~x & y).sum())
        p2 = binomtest(gained, gained + lost).pvalue if gained + lost else 1.0
        pg = (
            binomtest(gained, gained + lost, alternative="greater").pvalue if gained + lost else 1.0
        )
        se = math.sqrt(max(gained + lost, 1) / n) / math.sqrt(n)
        return {
            "delta": diff["diff"],
            "ci": list(diff["ci"]),
            "p_two_sided": float(p2),
            "p_greater": float(pg),
            "se": se,
            "df": math.inf,
            "seed_variance": 0.0,
            "n_items": n,
            "method": "tango_mcnemar",
        }
    r = random_effects_mean(a, b, confidence)
    return {
        **r,
        "delta": round(r["delta"], 6),
        "ci": [round(c, 6) for c in r["ci"]],
        "n_items": n,
        "method": "random_effects_items_seeds",
    }


def success_rate(a, confidence: float = 0.95) -> dict:
    """A model's success rate over items, rollouts and seeds with its interval: Wilson for one seed
    and one rollout, else the random-effects interval over items and seeds (as `compare`), clipped
    to [0, 1]."""
    a = as_outcomes(a)
    n = a.shape[1]
    if a.shape[0] == 1 and a.shape[2] == 1:
        r = rate(int(a.sum()), n, confidence)
        return {"success": r["p"], "ci": list(r["ci"]), "n_items": n}
    if n < 2:
        p = float(a.mean()) if n else None
        return {"success": p, "ci": [0.0, 1.0] if n else [None, None], "n_items": n}
    r = random_effects_mean(a, None, confidence)
    return {
        "success": round(r["delta"], 6),
        "ci": [round(max(0.0, r["ci"][0]), 6), round(min(1.0, r["ci"][1]), 6)],
        "n_items": n,
    }


def items_needed(
    detectable: float | None, se: float | None, n: int, effect: float, seed_variance: float = 0.0
) -> int | None:
    """Items a test needs for `effect` to be its detectable difference, from this run's `detectable`
    difference at standard error `se` on n items: the item part of the variance (se^2 -
    seed_variance) shrinks as 1 / n at the same ratio of detectable difference to se; the seeds'
    part does not shrink with more items, so None when the seeds alone keep `effect` out of reach
    (more seeds are needed), or for a non-positive effect."""
    if effect <= 0 or not se or not detectable:
        return None
    budget = (effect * se / detectable) ** 2 - seed_variance
    if budget <= 0:
        return None
    return max(1, math.ceil(n * max(se**2 - seed_variance, 0.0) / budget))


def n_needed(
    se: float,
    n: int,
    effect: float,
    alpha: float,
    power: float = POWER,
    df: float = math.inf,
    seed_variance: float = 0.0,
) -> int | None:
    """Items a one-sided test at `alpha` on `df` degrees of freedom needs to find `effect` with
    `power` (`items_needed` at the detectable difference (t_alpha + t_power) * se); None for a
    non-positive effect."""
    if effect <= 0 or not se:
        return None
    return items_needed(
        min_detectable_difference(se, alpha, power, df), se, n, effect, seed_variance
    )
