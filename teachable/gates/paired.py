"""Paired comparisons of two models evaluated on the same items with the same sample seeds.

A model's outcomes are an array shaped (training seeds, items, rollouts) of 0/1 successes; two models compared
share the item axis (same episode specs, same seeds). The unit of replication is the item: a model's per-item
success is averaged over its rollouts and training seeds, and the difference is averaged over items.

- One training seed and one rollout per item on both sides: the exact paired analysis, Tango's score interval
  and the exact McNemar (binomial) p-value on the discordant pairs.
- Otherwise: the mean per-item difference with a normal interval whose variance adds, to the item-to-item
  variance, each side's training-seed variance component over its seeds (a training seed is a random draw too,
  so a replication with other seeds is what the interval covers). With 2-3 seeds that component is itself a noisy
  estimate; more seeds make it firmer.
The standard error is floored at what one discordant pair in n gives, so a run with no discordance at all does not
claim a zero-width interval.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binomtest, norm

from teachable.gates.core import POWER, min_detectable_difference
from teachable.labeling.estimates import paired_difference, rate


def as_outcomes(values) -> np.ndarray:
    """A (seeds, items, rollouts) float array from nested lists or a 1-D/2-D array (missing axes get size 1)."""
    a = np.asarray(values, dtype=float)
    while a.ndim < 3:
        a = a[None] if a.ndim == 2 else a[None, :, None] if a.ndim == 1 else a.reshape(1, 1, 1)
    return a


def _seed_variance(a: np.ndarray) -> float:
    """The part of the variance of a model's mean that comes from its training seeds: sigma^2_seed / seeds, with
    sigma^2_seed from a two-way (seed x item) random-effects decomposition of the per-seed item means, so the
    item-to-item noise already counted over items is not counted twice. 0 with one seed."""
    s, n = a.shape[0], a.shape[1]
    if s < 2 or n < 2:
        return 0.0
    m = a.mean(axis=2)  # (seeds, items)
    residual = m - m.mean(axis=1, keepdims=True) - m.mean(axis=0, keepdims=True) + m.mean()
    residual_var = float((residual**2).sum() / ((s - 1) * (n - 1)))
    seed_var = float(m.mean(axis=1).var(ddof=1)) - residual_var / n
    return max(0.0, seed_var) / s


def compare(a, b, confidence: float = 0.95) -> dict:
    """Model `a` minus model `b` on the same items: `delta`, its interval `ci` at `confidence` (two-sided), the
    p-values `p_two_sided` and `p_greater` (a > b), the standard error `se`, `n_items`, and `method`."""
    a, b = as_outcomes(a), as_outcomes(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired comparison over different items: {a.shape[1]} vs {b.shape[1]}")
    n = a.shape[1]
    if n == 0:
        return {"delta": None, "ci": [None, None], "p_two_sided": None, "p_greater": None, "se": None,
                "n_items": 0, "method": "none"}
    if a.shape[0] == b.shape[0] == 1 and a.shape[2] == b.shape[2] == 1:
        x, y = a[0, :, 0].astype(bool), b[0, :, 0].astype(bool)
        diff = paired_difference(x, y, confidence)
        gained, lost = int((x & ~y).sum()), int((~x & y).sum())
        p2 = binomtest(gained, gained + lost).pvalue if gained + lost else 1.0
        pg = binomtest(gained, gained + lost, alternative="greater").pvalue if gained + lost else 1.0
        se = math.sqrt(max(gained + lost, 1) / n) / math.sqrt(n)
        return {"delta": diff["diff"], "ci": list(diff["ci"]), "p_two_sided": float(p2), "p_greater": float(pg),
                "se": se, "n_items": n, "method": "tango_mcnemar"}
    d = a.mean(axis=(0, 2)) - b.mean(axis=(0, 2))
    delta = float(d.mean())
    var = (float(d.var(ddof=1)) / n if n > 1 else 0.0) + _seed_variance(a) + _seed_variance(b)
    se = max(math.sqrt(var), 1.0 / n)
    z = norm.ppf(0.5 + confidence / 2)
    return {"delta": round(delta, 6), "ci": [round(delta - z * se, 6), round(delta + z * se, 6)],
            "p_two_sided": float(2 * norm.sf(abs(delta) / se)), "p_greater": float(norm.sf(delta / se)),
            "se": se, "n_items": n, "method": "normal_items_and_seeds"}


def success_rate(a, confidence: float = 0.95) -> dict:
    """A model's success rate over items, rollouts and seeds with its interval: Wilson for one seed and one
    rollout, else normal over items plus the seed spread (as `compare`)."""
    a = as_outcomes(a)
    n = a.shape[1]
    if a.shape[0] == 1 and a.shape[2] == 1:
        r = rate(int(a.sum()), n, confidence)
        return {"success": r["p"], "ci": list(r["ci"]), "n_items": n}
    item = a.mean(axis=(0, 2))
    p = float(item.mean())
    se = max(math.sqrt(float(item.var(ddof=1)) / n + _seed_variance(a)), 1.0 / n) if n > 1 else 0.5
    z = norm.ppf(0.5 + confidence / 2)
    return {"success": round(p, 6), "ci": [round(max(0.0, p - z * se), 6), round(min(1.0, p + z * se), 6)],
            "n_items": n}


def n_needed(se: float, n: int, effect: float, alpha: float, power: float = POWER) -> int | None:
    """Items a one-sided test at `alpha` needs to find `effect` with `power`, scaling this run's standard error
    (se ~ 1 / sqrt(n)); None for a non-positive effect."""
    if effect <= 0 or not se:
        return None
    return math.ceil(n * (min_detectable_difference(se, alpha, power) / effect) ** 2)
