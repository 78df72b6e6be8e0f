"""Stage `quadrants` (phase 1): the U threshold (a quantile of U, or fixed) and the fixed L
threshold, a quadrant for every labeled snapshot whose leverage side is decided (undetermined ones:
`quadrants.undetermined`), threshold plots, leverage by step bucket (the horizon check), and
per-quadrant counts and means as DVC metrics.

Outputs `data/quadrant_snapshots.jsonl` (labeled snapshots + `quadrant` + `split`: "eval" for the
tasks held out of all training by `evaluate.holdout_fraction`, else "train") and `reports/phase1/*`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from teachable import stage
from teachable.core.params import Params
from teachable.core.records import (
    read_jsonl,
    require_fields,
    require_unique,
    write_json,
    write_jsonl,
)
from teachable.core.tasks import is_heldout
from teachable.core.tracking import stage_run
from teachable.gates.balance import quadrant_balance
from teachable.labeling.plots import leverage_by_step, threshold_plots
from teachable.labeling.quadrants import SHORT_NAMES, leverage_side, quadrant, summary, thresholds

LABELED, OUT, REPORTS = (
    "data/labeled_snapshots.jsonl",
    "data/quadrant_snapshots.jsonl",
    Path("reports/phase1"),
)
# What this stage reads of each labeled snapshot (thresholds, sides, quadrants, the split, plots,
# summaries).
REQUIRED = (
    "snapshot_id",
    "seed",
    "step_idx",
    "U",
    "leverage.L_local",
    "leverage.L_upper",
    "leverage.decision_ci",
)
log = logging.getLogger("quadrants")


def main(params: Params) -> None:
    p = params.quadrants
    records = read_jsonl(LABELED)
    if not records:
        raise stage.StageInputError(
            f"{LABELED} holds no labeled snapshots: nothing to put in quadrants"
        )
    require_unique(require_fields(records, REQUIRED, LABELED), "snapshot_id", LABELED)
    REPORTS.mkdir(parents=True, exist_ok=True)
    with stage_run(
        "quadrants", params.model_dump(mode="json", include={"quadrants", "evaluate"})
    ) as mlflow:
        cut = thresholds(records, p)
        for r in records:
            r["L_side"] = leverage_side(r, cut)
            r["quadrant"] = quadrant(r, cut)
            r["split"] = (
                "eval" if is_heldout(r["seed"], params.evaluate.holdout_fraction) else "train"
            )
        placed = [r for r in records if r["quadrant"] is not None]
        per_quadrant = summary(placed)
        for q, stats in per_quadrant.items():
            if stats["count"] < p.min_per_quadrant:
                log.warning(
                    "%s has %d snapshots (< min_per_quadrant=%d)",
                    q,
                    stats["count"],
                    p.min_per_quadrant,
                )
        sides = {s: sum(r["L_side"] == s for r in records) for s in ("high", "low", "undetermined")}
        frame = pd.DataFrame(
            {
                "snapshot_id": [r["snapshot_id"] for r in placed],
                "U": [r["U"] for r in placed],
                "L_local": [r["leverage"]["L_local"] for r in placed],
                "ELP_net": [r.get("cpt", {}).get("ELP_net") for r in placed],
                "quadrant": [r["quadrant"] for r in placed],
            }
        )
        frame.to_csv(REPORTS / "u_l.csv", index=False)
        leverage_by_step(records).to_csv(REPORTS / "leverage_by_step.csv", index=False)
        qs = [0.1, 0.25, 0.5, 0.75, 0.9]
        write_json(
            REPORTS / "quantiles.json",
            {
                c: dict(zip(map(str, qs), np.quantile(frame[c], qs).round(6).tolist()))
                for c in ("U", "L_local")
            },
        )
        write_json(REPORTS / "quadrant_thresholds.json", cut)
        balance = quadrant_balance(
            {SHORT_NAMES[q]: s["count"] for q, s in per_quadrant.items()},
            params.quadrants.min_per_quadrant,
        )
        write_json(
            REPORTS / "quadrant_metrics.json",
            {
                **per_quadrant,
                "leverage_sides": sides,
                "n_labeled": len(records),
                "n_placed": len(placed),
                "gates": {"quadrant_balance": balance},
            },
        )
        write_jsonl(OUT, placed)
        for path in threshold_plots(frame, cut, REPORTS):
            mlflow.log_artifact(str(path))
        mlflow.log_metrics(
            {
                **{f"{q}_count": s["count"] for q, s in per_quadrant.items()},
                **{f"L_side_{s}": n for s, n in sides.items()},
            }
        )


if __name__ == "__main__":
    stage.run(main)
