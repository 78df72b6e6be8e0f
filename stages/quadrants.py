"""Stage `quadrants` (phase 1): the U threshold (a quantile of U, or fixed) and the fixed L threshold, a quadrant
for every labeled snapshot whose leverage side is decided (undetermined ones: `quadrants.undetermined`), threshold
plots, leverage by step bucket (the horizon check), and per-quadrant counts and means as DVC metrics.

Outputs `data/quadrant_snapshots.jsonl` (labeled snapshots + `quadrant` + `split`: "eval" for the tasks held out of
all training by `evaluate.holdout_fraction`, else "train") and `reports/phase1/*`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from teachable import stage  # noqa: E402
from teachable.config import Params  # noqa: E402
from teachable.gates.balance import quadrant_balance  # noqa: E402
from teachable.labeling.quadrants import (QUADRANTS, SHORT_NAMES, leverage_side, quadrant, summary,  # noqa: E402
                                         thresholds)
from teachable.records import read_jsonl, require_fields, require_unique, write_json, write_jsonl  # noqa: E402
from teachable.tasks import is_heldout  # noqa: E402
from teachable.tracking import stage_run  # noqa: E402

LABELED, OUT, REPORTS = "data/labeled_snapshots.jsonl", "data/quadrant_snapshots.jsonl", Path("reports/phase1")
COLORS = dict(zip(QUADRANTS, ("#0072B2", "#E69F00", "#999999", "#009E73")))  # Okabe-Ito, colour-blind safe
# What this stage reads of each labeled snapshot (thresholds, sides, quadrants, the split, plots, summaries).
REQUIRED = ("snapshot_id", "seed", "step_idx", "U", "leverage.L_local", "leverage.L_upper", "leverage.decision_ci")
log = logging.getLogger("quadrants")


def plots(frame: pd.DataFrame, cut: dict) -> list[Path]:
    paths = []
    for column, label, threshold, name in (("U", "U (entropy, nats)", cut["U"], "hist_U.png"),
                                           ("L_local", "L_local (success gain)", cut["L"], "hist_L.png")):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.hist(frame[column], bins=20, color="#56B4E9", edgecolor="white")
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
        ax.set(xlabel=label, ylabel="snapshots", title=f"{column} over {len(frame)} snapshots")
        ax.legend()
        fig.tight_layout()
        fig.savefig(REPORTS / name, dpi=120)
        plt.close(fig)
        paths.append(REPORTS / name)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for q in QUADRANTS:
        rows = frame[frame.quadrant == q]
        ax.scatter(rows.U, rows.L_local, s=14, alpha=0.7, color=COLORS[q], label=f"{q} ({len(rows)})")
    ax.axvline(cut["U"], color="black", linestyle="--", linewidth=1)
    ax.axhline(cut["L"], color="black", linestyle="--", linewidth=1)
    ax.set(xlabel="U (entropy, nats)", ylabel="L_local (success gain)", title="Snapshots by uncertainty and leverage")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(REPORTS / "scatter_U_L.png", dpi=120)
    plt.close(fig)
    return paths + [REPORTS / "scatter_U_L.png"]


def leverage_by_step(records: list[dict], width: int = 8) -> pd.DataFrame:
    """Per bucket of `width` steps into the episode: snapshots, mean L_local, the share with L_local > 0 and the
    share decided high. With rollouts cut at the episode's end, late snapshots could not show leverage; with a
    horizon measured from the snapshot (`label.horizon`) the shares should not fall with the step."""
    frame = pd.DataFrame({"step": [r["step_idx"] for r in records], "L_local": [r["leverage"]["L_local"] for r in records],
                          "high": [r["L_side"] == "high" for r in records]})
    frame["steps"] = ((frame.step - 1).clip(lower=0) // width * width + 1).map(lambda lo: f"{lo}-{lo + width - 1}")
    table = frame.groupby("steps", sort=False).agg(n=("L_local", "size"), mean_L_local=("L_local", "mean"),
                                                   share_L_positive=("L_local", lambda s: (s > 0).mean()),
                                                   share_high=("high", "mean"))
    order = sorted(table.index, key=lambda label: int(label.split("-")[0]))
    return table.loc[order].round(4).reset_index()


def main(params: Params) -> None:
    p = params.quadrants
    records = read_jsonl(LABELED)
    if not records:
        raise stage.StageInputError(f"{LABELED} holds no labeled snapshots: nothing to put in quadrants")
    require_unique(require_fields(records, REQUIRED, LABELED), "snapshot_id", LABELED)
    REPORTS.mkdir(parents=True, exist_ok=True)
    with stage_run("quadrants", params.model_dump(mode="json", include={"quadrants", "evaluate"})) as mlflow:
        cut = thresholds(records, p)
        for r in records:
            r["L_side"] = leverage_side(r, cut)
            r["quadrant"] = quadrant(r, cut)
            r["split"] = "eval" if is_heldout(r["seed"], params.evaluate.holdout_fraction) else "train"
        placed = [r for r in records if r["quadrant"] is not None]
        per_quadrant = summary(placed)
        for q, stats in per_quadrant.items():
            if stats["count"] < p.min_per_quadrant:
                log.warning("%s has %d snapshots (< min_per_quadrant=%d)", q, stats["count"], p.min_per_quadrant)
        sides = {s: sum(r["L_side"] == s for r in records) for s in ("high", "low", "undetermined")}
        frame = pd.DataFrame({"snapshot_id": [r["snapshot_id"] for r in placed], "U": [r["U"] for r in placed],
                              "L_local": [r["leverage"]["L_local"] for r in placed],
                              "ELP_net": [r.get("cpt", {}).get("ELP_net") for r in placed],
                              "quadrant": [r["quadrant"] for r in placed]})
        frame.to_csv(REPORTS / "u_l.csv", index=False)
        leverage_by_step(records).to_csv(REPORTS / "leverage_by_step.csv", index=False)
        qs = [0.1, 0.25, 0.5, 0.75, 0.9]
        write_json(REPORTS / "quantiles.json", {c: dict(zip(map(str, qs), np.quantile(frame[c], qs).round(6).tolist()))
                                                for c in ("U", "L_local")})
        write_json(REPORTS / "quadrant_thresholds.json", cut)
        balance = quadrant_balance({SHORT_NAMES[q]: s["count"] for q, s in per_quadrant.items()},
                                   params.quadrants.min_per_quadrant)
        write_json(REPORTS / "quadrant_metrics.json", {**per_quadrant, "leverage_sides": sides,
                                                        "n_labeled": len(records), "n_placed": len(placed),
                                                        "gates": {"quadrant_balance": balance}})
        write_jsonl(OUT, placed)
        for path in plots(frame, cut):
            mlflow.log_artifact(str(path))
        mlflow.log_metrics({**{f"{q}_count": s["count"] for q, s in per_quadrant.items()},
                            **{f"L_side_{s}": n for s, n in sides.items()}})


if __name__ == "__main__":
    stage.run(main)
