"""Stage `predictor` (phase 4): predict teachability from cheap observables, no rollouts.

From the training split of `data/quadrant_snapshots.jsonl` (`split == "train"`, or every record when
the field is absent): grouped-by-task cross-validation of U (text features only), L_local, ELP_net
and quadrant; Precision@K and NDCG@K of the out-of-fold ELP_net ranking against entropy, random and
oracle; the four phase 4 gates (`teachable.evaluation.predictor.assess`: R2 of U and of L_local
against `predictor.targets`, quadrant accuracy's lift over the majority and U-threshold baselines,
NDCG@K over entropy), each pass | fail | inconclusive at `gates.alpha`, under `gates` in the metrics
file. Then the models are refitted on the whole training split and saved (skops, no pickle). Outputs
`reports/phase4/training_result.json`, `reports/phase4/ranking_curves.csv`, `models/predictor/`, and
`reports/phase4/oof_predictions.csv` (each training snapshot's out-of-fold predicted ELP, for
`select_snapshots`).
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import pandas as pd

from teachable import stage
from teachable.core.params import Params
from teachable.evaluation.predictor import EmbedderError, Predictor, check_embedder
from teachable.evaluation.predictor.assess import assess
from teachable.core.records import read_jsonl, write_json
from teachable.core.tasks import training_snapshots
from teachable.core.tracking import stage_run

SNAPSHOTS, MODELS, REPORTS = (
    "data/quadrant_snapshots.jsonl",
    Path("models/predictor"),
    Path("reports/phase4"),
)
log = logging.getLogger("predictor")


def main(params: Params) -> None:
    p = params.predictor
    check_embedder(p.embedder, p.sentence_model)  # before any work or MLflow run
    records = read_jsonl(SNAPSHOTS)
    train = training_snapshots(records)
    log.info("%d of %d snapshots in the training split", len(train), len(records))
    logged = params.model_dump(
        mode="json", include={"seed": True, "predictor": True, "gates": {"alpha", "n_resamples"}}
    )
    with stage_run("predictor", logged) as mlflow:
        result, rows, cv = assess(train, p, params.seed, params.gates)
        predictor = Predictor.fit(
            train, p.embedder, p.embedding_dim, p.sentence_model, p.model, p.alpha, params.seed
        )
        shutil.rmtree(MODELS, ignore_errors=True)
        predictor.save(MODELS)
        REPORTS.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows, columns=["k", "method", "precision", "ndcg"]).to_csv(
            REPORTS / "ranking_curves.csv", index=False
        )
        write_json(REPORTS / "training_result.json", result)
        # out-of-fold: each snapshot scored by models that never saw its task (what
        # `select_snapshots` ranks by)
        pd.DataFrame(
            {
                "snapshot_id": [r["snapshot_id"] for r in train],
                "ELP_pred": cv.predictions["ELP_net"],
            }
        ).to_csv(REPORTS / "oof_predictions.csv", index=False)
        metrics = {
            "n_snapshots": result["n_snapshots"],
            "r2_U": result["regression"]["U"]["r2"],
            "r2_L_local": result["regression"]["L_local"]["r2"],
            "r2_ELP_net": result["regression"]["ELP_net"]["r2"],
            "quadrant_accuracy": result["quadrant"]["accuracy"],
        }
        for name, gate in result["gates"].items():
            metrics.update({f"gate_{name}": gate["value"], f"gate_{name}_p_value": gate["p_value"]})
        for row in rows:
            metrics[f"{row['method']}_ndcg_at_{row['k']}"] = row["ndcg"]
            metrics[f"{row['method']}_precision_at_{row['k']}"] = row["precision"]
        mlflow.log_metrics({k: v for k, v in metrics.items() if v is not None})
        mlflow.set_tags({f"gate.{name}": g["status"] for name, g in result["gates"].items()})
        mlflow.log_artifact(str(REPORTS / "training_result.json"))
        mlflow.log_artifact(str(REPORTS / "ranking_curves.csv"))
    log.info(
        "R2 U %.3f, L_local %.3f, ELP_net %.3f; quadrant accuracy %.3f (majority %.3f); gates: %s",
        metrics["r2_U"],
        metrics["r2_L_local"],
        metrics["r2_ELP_net"],
        metrics["quadrant_accuracy"],
        result["quadrant"]["majority_baseline"],
        ", ".join(f"{name} {g['status']}" for name, g in result["gates"].items()),
    )


def run() -> None:
    try:
        stage.run(main)
    except EmbedderError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
