"""What every gate shares: the four outcomes, the verdict record, and the decision rules.

A gate is a pre-specified test. It computes its statistic, interval and p-value once and says
`pass`, `fail` or `inconclusive` (the data decide neither way at this n), with the n it would need.
The stage that computes a gate's inputs calls it and writes the verdict; the report reads the
verdict and never re-derives it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import t as t_dist

PASS, FAIL, INCONCLUSIVE, NOT_APPLICABLE = "pass", "fail", "inconclusive", "not_applicable"
STATUSES = (PASS, FAIL, INCONCLUSIVE, NOT_APPLICABLE)
POWER = 0.8
N_PERMUTATIONS = 9999


def _round(x):
    return (
        None if x is None or (isinstance(x, float) and not math.isfinite(x)) else round(float(x), 6)
    )


def plain(value):
    """JSON-ready: numpy scalars to Python, floats rounded to 6 places (non-finite to None),
    containers walked."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _round(float(value))
    return value


def verdict(
    statistic: str, value, ci, p_value, alpha: float, status: str, n: int, **detail
) -> dict:
    """A gate's outcome as written to the stage's metrics file: the statistic's name and value, its
    interval, p-value, level, status and n, plus whatever the gate adds (threshold, min_detectable,
    n_needed, ...)."""
    return plain(
        {
            "statistic": statistic,
            "value": value,
            "ci": list(ci) if ci else [None, None],
            "p_value": p_value,
            "alpha": alpha,
            "status": status,
            "n": n,
            **detail,
        }
    )


def not_applicable(statistic: str, alpha: float, n: int, why: str, **detail) -> dict:
    return verdict(statistic, None, None, None, alpha, NOT_APPLICABLE, n, why=why, **detail)


def decide(p_value: float | None, ci_high: float | None, alpha: float, useful: float) -> str:
    """A one-sided test that the effect is positive: pass when p < alpha; fail when the interval's
    upper bound is below `useful` (the smallest effect worth having, fixed in advance: the data rule
    it out); else inconclusive."""
    if p_value is not None and p_value < alpha:
        return PASS
    if ci_high is not None and ci_high < useful:
        return FAIL
    return INCONCLUSIVE


def above_threshold(ci: tuple[float, float], threshold: float) -> str:
    """Is a quantity above a fixed threshold? pass when the whole interval is above it, fail when
    the whole interval is at or below it, inconclusive when the interval straddles it."""
    low, high = ci
    return PASS if low > threshold else FAIL if high <= threshold else INCONCLUSIVE


def min_detectable_difference(
    standard_error: float,
    alpha: float,
    power: float = POWER,
    df: float = math.inf,
    two_sided: bool = False,
) -> float:
    """The true difference a test at `alpha` (one-sided unless `two_sided`) detects with `power`,
    for an estimate with this standard error and degrees of freedom (Student's t; normal at df =
    inf)."""
    level = 1 - alpha / 2 if two_sided else 1 - alpha
    return (t_dist.ppf(level, df) + t_dist.ppf(power, df)) * standard_error


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: each p-value times the number of hypotheses not yet rejected,
    kept monotone."""
    order = np.argsort(p_values, kind="stable")
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
