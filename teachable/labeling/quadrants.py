"""U x L quadrants: thresholds, each snapshot's quadrant from its U and its leverage side,
per-quadrant summaries.

U is computed exactly from the student's distribution, so its threshold is a quantile of U (or
fixed) and a snapshot at the threshold counts as low. L_local is estimated from rollouts, so its
threshold is fixed before labeling and a snapshot is high or low only when its decision interval
(`leverage.decision_ci`, see `labeling.label`) lies on one side; one that straddles it is
`undetermined`, and `quadrants.undetermined` says whether it is left out or placed by its point
estimate (a point estimate at the threshold counts as low). A record labeled under the posterior
rule (`leverage.stopping: posterior`) carries its side from the posterior instead, and that side is
used.
"""

from __future__ import annotations

import math

import numpy as np

from teachable.core.params import QuadrantParams
from teachable.core.records import InputError
from teachable.labeling.estimates import side

QUADRANTS = ("Q1_highU_highL", "Q2_highU_lowL", "Q3_lowU_lowL", "Q4_lowU_highL")
SHORT_NAMES = {q: q.split("_")[0] for q in QUADRANTS}  # Q1_highU_highL -> Q1


def thresholds(records: list[dict], params: QuadrantParams) -> dict:
    """The U and L thresholds. U values must be finite: a NaN makes the quantile NaN, every `U >
    NaN` False, and so every snapshot low-U, silently (issue 33)."""
    for r in records:
        if not math.isfinite(r["U"]):
            raise InputError(
                f"snapshot {r.get('snapshot_id', '?')} has U = {r['U']}: "
                "the U threshold needs finite values (fix or relabel it)"
            )
    if params.U_threshold is not None:
        u_cut, source = params.U_threshold, "fixed"
    else:
        u_cut, source = (
            float(np.quantile([r["U"] for r in records], params.U_quantile)),
            f"quantile {params.U_quantile}",
        )
    return {
        "U": u_cut,
        "L": params.L_threshold,
        "U_source": source,
        "undetermined": params.undetermined,
    }


def leverage_side(record: dict, cut: dict) -> str:
    """high | low | undetermined: the record's own side when it was labeled under the posterior rule
    against this threshold (`label.stopping: posterior`, `labeling.posterior`), else its decision
    interval against the L threshold."""
    lev = record["leverage"]
    if lev.get("stopping") == "posterior" and lev.get("threshold") == cut["L"]:
        return lev["side"]
    return side(lev["decision_ci"], cut["L"])


def quadrant(record: dict, cut: dict) -> str | None:
    """The record's quadrant; None for an undetermined leverage side when such snapshots are
    excluded."""
    lev_side = leverage_side(record, cut)
    if lev_side == "undetermined":
        if cut["undetermined"] == "exclude":
            return None
        lev_side = "high" if record["leverage"]["L_local"] > cut["L"] else "low"
    high_u, high_l = record["U"] > cut["U"], lev_side == "high"
    if high_u:
        return QUADRANTS[0] if high_l else QUADRANTS[1]
    return QUADRANTS[3] if high_l else QUADRANTS[2]


def summary(records: list[dict]) -> dict:
    """Count and mean U, L_local, L_upper, ELP_net per quadrant."""
    out = {}
    for q in QUADRANTS:
        rows = [r for r in records if r["quadrant"] == q]
        mean = lambda f: round(float(np.mean([f(r) for r in rows])), 6) if rows else None
        out[q] = {
            "count": len(rows),
            "mean_U": mean(lambda r: r["U"]),
            "mean_L_local": mean(lambda r: r["leverage"]["L_local"]),
            "mean_L_upper": mean(lambda r: r["leverage"]["L_upper"]),
            "mean_ELP_net": mean(lambda r: r["cpt"]["ELP_net"])
            if all("cpt" in r for r in rows)
            else None,
        }
    return out
