"""Success-rate estimates from rollouts, each with a 95% interval for the design that produced it.

Every arm of a snapshot (student, forced expert action, each CPT patch) runs rollout i with the same
sample seed (common random numbers: see `teachable.rollout.engine`), so a difference between two
arms is a difference of *paired* binary outcomes and gets Tango's score interval for a paired
difference, which rests on the discordant pairs, so the strong coupling the shared seeds create
narrows it.
The expert in control is deterministic, so its one rollout is a known 0 or 1 and L_upper's interval
is the student's Wilson interval shifted.

ELP_net, the best patch minus placebo, is a maximum over three noisy arms and so biased upward when
the best arm is picked and scored on the same rollouts (the winner's curse). Here the route is
chosen on the even-numbered rollouts and scored on the odd-numbered ones; the naive in-sample
maximum is kept beside it as `ELP_net_naive`.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
from scipy.optimize import brentq
from scipy.stats import binomtest, norm

PATCH_CONDITIONS = ("demo", "contrast", "hint")
# rolled out besides the student; CPT's `base` is the student arm
CPT_ARMS = ("placebo", *PATCH_CONDITIONS)
CONFIDENCE = 0.95


def sample_seed(seed: int | str, snapshot_id: str, i: int) -> int:
    """Rollout i's sample seed. Labeling uses `seed`; other stages pass a namespaced seed (e.g.
    "validate|0") so their streams never meet the labeling's."""
    digest = hashlib.sha256(f"{seed}:{snapshot_id}:{i}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def rate(successes: int, n: int, confidence: float = CONFIDENCE) -> dict:
    """Estimate with its Wilson interval."""
    if n == 0:
        return {"p": None, "k": 0, "n": 0, "ci": [None, None]}
    low, high = wilson(successes, n, confidence)
    return {
        "p": round(successes / n, 6),
        "k": successes,
        "n": n,
        "ci": [round(low, 6), round(high, 6)],
    }


def paired_difference(x, y, confidence: float = CONFIDENCE) -> dict:
    """mean(x) - mean(y) for paired binary outcomes, with Tango's score interval (1998; recommended
    for paired proportions by Fagerland, Lydersen and Laake 2013). It depends on the discordant
    pairs only, so the strong coupling of arms that share seeds narrows it, yet it keeps a sensible
    width when no pair is discordant."""
    x, y = np.asarray(x, dtype=bool), np.asarray(y, dtype=bool)
    if x.shape != y.shape:
        raise ValueError(f"paired outcomes need equal lengths, got {x.size} and {y.size}")
    n = x.size
    if n == 0:
        return {"diff": None, "ci": [None, None], "n": 0}
    b, c = int(np.sum(x & ~y)), int(np.sum(~x & y))
    diff = (b - c) / n
    z = norm.ppf(0.5 + confidence / 2)
    score = lambda theta: _tango_score(b, c, n, theta)
    low = -1.0 if score(-1 + 1e-12) <= z else brentq(lambda t: score(t) - z, -1 + 1e-12, diff)
    high = 1.0 if score(1 - 1e-12) >= -z else brentq(lambda t: score(t) + z, diff, 1 - 1e-12)
    return {"diff": round(diff, 6), "ci": [round(low, 6), round(high, 6)], "n": n}


def _tango_score(b: int, c: int, n: int, theta: float) -> float:
    """Tango's score statistic for H0: p(x) - p(y) = theta, with b = #(x=1, y=0) and c = #(x=0,
    y=1); it falls as theta rises and is McNemar's statistic at theta = 0."""
    w = -b - c + (2 * n - b + c) * theta
    q21 = (math.sqrt(max(0.0, w * w + 8 * n * c * theta * (1 - theta))) - w) / (4 * n)
    var, excess = n * (2 * q21 + theta * (1 - theta)), b - c - n * theta
    if abs(excess) < 1e-9:
        return 0.0
    return excess / math.sqrt(var) if var > 0 else math.copysign(math.inf, excess)


def stratified_difference(x, y, matched, p_match: float, confidence: float = CONFIDENCE) -> dict:
    """mean(x) - mean(y) for paired outcomes where the pairs marked `matched` are equal by
    construction and occur with a known probability `p_match`: (1 - p_match) times the paired
    difference over the unmatched pairs (post-stratification with an exactly known weight), its
    interval scaled alike. For L_local the matched pairs are the rollouts whose own first draw
    picked the expert's action, the same episode as the forced rollout; the student's probability of
    that action is known exactly, so only the rest of the mass is left to estimate.

    The matched pairs are not read. Under the engine's `run_shared` a matched pair is one episode
    serving both arms, so its two outcomes are equal by construction; a check that they agree could
    never fire and checked nothing
    (tests/test_labeling.py::test_forced_and_student_rollouts_stay_in_step tests the coupling
    itself)."""
    x, y, matched = (np.asarray(v, dtype=bool) for v in (x, y, matched))
    weight, unmatched = 1.0 - p_match, ~matched
    if not unmatched.any():
        return {
            "diff": 0.0,
            "ci": [round(-weight, 6), round(weight, 6)],
            "n": int(x.size),
            "n_unmatched": 0,
        }
    rest = paired_difference(x[unmatched], y[unmatched], confidence)
    return {
        "diff": round(weight * rest["diff"], 6),
        "ci": [round(weight * c, 6) for c in rest["ci"]],
        "n": int(x.size),
        "n_unmatched": int(unmatched.sum()),
    }


def known_minus_rate(p_known: float, y, confidence: float = CONFIDENCE) -> dict:
    """p_known - mean(y), where p_known is exact (a deterministic rollout): the Wilson interval of
    y, reflected."""
    y = np.asarray(y, dtype=bool)
    low, high = wilson(int(y.sum()), y.size, confidence)
    diff = p_known - y.mean()
    return {
        "diff": round(float(diff), 6),
        "ci": [round(p_known - high, 6), round(p_known - low, 6)],
        "n": int(y.size),
    }


def side(ci: list[float], threshold: float) -> str:
    """Which side of `threshold` an interval puts the quantity: high (entirely above), low (at or
    below), or undetermined (it straddles the threshold)."""
    low, high = ci
    if low > threshold:
        return "high"
    if high <= threshold:
        return "low"
    return "undetermined"


def local_leverage(
    outcomes: dict[str, list[bool]],
    matched: list[bool] | None,
    p_match: float | None,
    confidence: float = CONFIDENCE,
) -> dict:
    """L_local = p(expert action forced, student after) - p(student), paired by seed; stratified on
    the rollouts whose first draw already picked the expert's action when that probability is known
    (`stratified_difference`), else the plain paired difference."""
    if matched is None or p_match is None:
        return {
            **paired_difference(outcomes["force"], outcomes["student"], confidence),
            "estimator": "paired",
        }
    return {
        **stratified_difference(
            outcomes["force"], outcomes["student"], matched, p_match, confidence
        ),
        "estimator": "stratified",
        "p_match": round(p_match, 6),
    }


def leverage(
    outcomes: dict[str, list[bool]],
    matched: list[bool] | None = None,
    p_match: float | None = None,
    confidence: float = CONFIDENCE,
) -> dict:
    """L_local (`local_leverage`); L_upper = p(expert controls) - p(student), the expert's one
    deterministic rollout against the student's Wilson interval."""
    student, force, expert = outcomes["student"], outcomes["force"], outcomes["expert"]
    local = local_leverage(outcomes, matched, p_match, confidence)
    upper = known_minus_rate(float(expert[0]), student, confidence)
    rates = {
        arm: rate(sum(v), len(v))
        for arm, v in (("student", student), ("force", force), ("expert", expert))
    }
    return {
        **{f"p_{arm}": r["p"] for arm, r in rates.items()},
        **{f"n_{arm}": r["n"] for arm, r in rates.items()},
        "L_local": local["diff"],
        "L_upper": upper["diff"],
        "L_local_estimator": local["estimator"],
        **(
            {"p_match": local["p_match"], "n_unmatched": local["n_unmatched"]}
            if "p_match" in local
            else {}
        ),
        "ci": {
            **{arm: r["ci"] for arm, r in rates.items()},
            "L_local": local["ci"],
            "L_upper": upper["ci"],
        },
    }


def cpt(outcomes: dict[str, list[bool]], confidence: float = CONFIDENCE) -> dict:
    """The Contextual Patch Test. `base` is the student arm (the same rollouts: an empty patch).
    Each patch arm minus placebo with its paired interval; ELP_net with its route chosen on the even
    rollouts and estimated on the odd ones (`ELP_net_halves`: the chosen route's value on each half,
    for split-half reliability); the in-sample maximum as `ELP_net_naive`. Under the posterior
    stopping rule the student arm can stop before the CPT arms: `p_base` then rests on the student
    rollouts there are, and `n_base` says how many (absent when it is all n)."""
    n = len(outcomes["placebo"])
    arms = {"base": outcomes["student"][:n], **{c: outcomes[c] for c in CPT_ARMS}}
    short = {"n_base": len(arms["base"])} if len(arms["base"]) < n else {}
    net = {c: paired_difference(arms[c], arms["placebo"], confidence) for c in PATCH_CONDITIONS}
    half = {h: {c: np.asarray(v[h::2], dtype=float) for c, v in arms.items()} for h in (0, 1)}
    pick = lambda part: max(
        PATCH_CONDITIONS, key=lambda c: (part[c].mean(), -PATCH_CONDITIONS.index(c))
    )
    route = pick(half[0])
    honest = paired_difference(half[1][route], half[1]["placebo"], confidence)
    naive = pick({c: np.asarray(v, dtype=float) for c, v in arms.items()})
    halves = [round(float(half[h][route].mean() - half[h]["placebo"].mean()), 6) for h in (0, 1)]
    return {
        **{f"p_{c}": round(float(np.mean(v)), 6) for c, v in arms.items()},
        "net": net,
        "ELP_net": honest["diff"],
        "ELP_net_ci": honest["ci"],
        "route_net": route,
        "n_estimation": honest["n"],
        "ELP_net_naive": net[naive]["diff"],
        "route_naive": naive,
        "ELP_net_halves": halves,
        "n_per_condition": n,
        **short,
    }
