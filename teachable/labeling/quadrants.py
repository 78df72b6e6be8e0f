"""U x L quadrants: thresholds (a quantile of U and of L_local, or manual), assignment, per-quadrant summaries."""

from __future__ import annotations

import numpy as np

from teachable.config import QuadrantParams

QUADRANTS = ("Q1_highU_highL", "Q2_highU_lowL", "Q3_lowU_lowL", "Q4_lowU_highL")


def thresholds(records: list[dict], params: QuadrantParams) -> dict:
    if params.mode == "manual":
        return {"U": params.U_threshold, "L": params.L_threshold, "mode": "manual"}
    u = [r["U"] for r in records]
    lev = [r["leverage"]["L_local"] for r in records]
    return {"U": float(np.quantile(u, params.quantile)), "L": float(np.quantile(lev, params.quantile)),
            "mode": "auto", "quantile": params.quantile}


def quadrant(u: float, lev: float, cut: dict) -> str:
    """High means strictly above the threshold, so a threshold at the median splits ties to the low side."""
    high_u, high_l = u > cut["U"], lev > cut["L"]
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
            "mean_ELP_net": mean(lambda r: r["cpt"]["ELP_net"]) if all("cpt" in r for r in rows) else None,
        }
    return out
