"""Success-rate estimates from rollouts: Wilson intervals, leverage and the Contextual Patch Test.

Every rollout of a snapshot under condition c with index i uses the sample seed f(seed, snapshot, i), the same for
every condition (common random numbers), so differences between conditions are not blurred by sampling noise.
"""

from __future__ import annotations

import hashlib

from scipy.stats import binomtest

CPT_CONDITIONS = ("base", "placebo", "demo", "contrast", "hint")
PATCH_CONDITIONS = ("demo", "contrast", "hint")


def sample_seed(seed: int, snapshot_id: str, i: int) -> int:
    digest = hashlib.sha256(f"{seed}:{snapshot_id}:{i}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def rate(successes: int, n: int) -> dict:
    """Estimate with its 95% Wilson interval."""
    if n == 0:
        return {"p": None, "k": 0, "n": 0, "ci": [None, None]}
    ci = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {"p": round(successes / n, 6), "k": successes, "n": n, "ci": [round(ci.low, 6), round(ci.high, 6)]}


def leverage(outcomes: dict[str, list[bool]]) -> dict:
    """L_local = p(expert action forced, student after) - p(student); L_upper = p(expert controls) - p(student)."""
    student, force, expert = (rate(sum(outcomes[c]), len(outcomes[c])) for c in ("student", "force", "expert"))
    diff = lambda a, b: round(a["p"] - b["p"], 6) if a["p"] is not None and b["p"] is not None else None
    return {
        "p_student": student["p"], "p_force": force["p"], "p_expert": expert["p"],
        "L_local": diff(force, student), "L_upper": diff(expert, student),
        "n_student": student["n"], "n_force": force["n"], "n_expert": expert["n"],
        "ci": {"student": student["ci"], "force": force["ci"], "expert": expert["ci"]},
    }


def cpt(outcomes: dict[str, list[bool]]) -> dict:
    """ELP_net = max(p_demo, p_contrast, p_hint) - p_placebo; route_net = the patch that attains it."""
    p = {c: sum(outcomes[c]) / len(outcomes[c]) for c in CPT_CONDITIONS}
    route = max(PATCH_CONDITIONS, key=lambda c: (p[c], -PATCH_CONDITIONS.index(c)))
    return {
        **{f"p_{c}": round(p[c], 6) for c in CPT_CONDITIONS},
        "ELP_net": round(p[route] - p["placebo"], 6),
        "route_net": route,
        "n_per_condition": len(outcomes["base"]),
    }
