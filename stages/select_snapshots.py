"""Stage `select_snapshots` (phase 5, H7): at budget `select.budget`, choose training snapshots by
each method (random, entropy, predictor, oracle; see `teachable.evaluation.selection`), train
`train.n_seeds` LoRA adapters per method with the `train` recipe, and evaluate each on phase 3's
held-out panels (the base student's episodes are phase 3's own, same specs and sample seeds).

Only train-side snapshots are candidates; a budget larger than their number, or a candidate without
a prediction in `reports/phase4/oof_predictions.csv`, ends the stage with one line naming them (exit
code 2). Outputs `models/phase5/<method>/seed-<k>/`, `reports/phase5/selection_summary.json` (DVC
metrics: per method the gain and retention with paired intervals, the held-out ELP of its selection;
the gates `selection_ordering`, predictor > entropy > random as paired comparisons, and
`selection_retention`, non-inferiority per method) and `selection_results.csv`. Each method's seeds
are nested MLflow runs under one `select_snapshots` parent run.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from teachable import stage
from teachable.core import resume
from teachable.core.params import Params
from teachable.core.records import read_jsonl, write_json
from teachable.core.tasks import training_snapshots
from teachable.core.tracking import log_to_run, stage_run
from teachable.evaluation.panels import evaluate_models, evaluation_plan
from teachable.evaluation.selection import check_budget, select
from teachable.evaluation.selection_runs import read_predictions, summarise, train_method
from teachable.policy.student import load_student

SNAPSHOTS, RETENTION = "data/quadrant_snapshots.jsonl", "data/retention_panel.jsonl"
PREDICTIONS, PHASE3_EPISODES = "reports/phase4/oof_predictions.csv", "reports/phase3/episodes.csv"
MODELS, REPORTS = Path("models/phase5"), Path("reports/phase5")


def main(params: Params) -> None:
    s = params.select
    records = training_snapshots(read_jsonl(SNAPSHOTS))
    # before any work: a budget beyond the pool makes every method alike
    check_budget(len(records), s.budget)
    predicted = read_predictions(PREDICTIONS, records) if "predictor" in s.methods else None
    chosen = {
        m: select(records, m, s.budget, params.seed, predicted, PREDICTIONS) for m in s.methods
    }
    models = [
        model
        for m, snapshots in chosen.items()
        for model in train_method(params, m, snapshots, MODELS)
    ]
    base_rows = pd.read_csv(PHASE3_EPISODES, keep_default_na=False)
    key = {
        **params.model_dump(
            mode="json", include={"seed", "env", "shop", "student", "train", "evaluate", "select"}
        ),
        "label_horizon": params.label.horizon,
        "models": [m.mlflow_run_id for m in models],
    }
    scratch = resume.ScratchLog("select_snapshots", key)
    with stage_run("select_snapshots", key) as mlflow:
        plan = evaluation_plan(params, read_jsonl(SNAPSHOTS), read_jsonl(RETENTION))
        rows = evaluate_models(load_student(params.student), models, scratch=scratch, **plan)
        # phase 3's panels
        base_rows = base_rows[(base_rows.model == "base") & (base_rows.panel != "learning")]
        if set(base_rows.item) != set(rows.item):
            raise stage.StageInputError(
                f"{PHASE3_EPISODES} was not made with these `evaluate` params; "
                "run `dvc repro evaluate_models`"
            )
        rows = pd.concat([base_rows, rows], ignore_index=True)
        summary, table = summarise(rows, chosen, params)
        REPORTS.mkdir(parents=True, exist_ok=True)
        write_json(REPORTS / "selection_summary.json", summary)
        table.to_csv(REPORTS / "selection_results.csv", index=False)
        mlflow.log_metrics({f"{m}_delta": v["delta"] for m, v in summary["methods"].items()})
        mlflow.log_artifacts(str(REPORTS), artifact_path="phase5")
        for model in models:  # each seed's run gets its method's numbers (means over the seeds)
            result = summary["methods"][model.model.removeprefix("select-")]
            log_to_run(
                model.mlflow_run_id,
                {
                    "eval_success": result["success"],
                    "eval_delta": result["delta"],
                    "retention_delta": result["retention_delta"],
                },
            )
    scratch.remove()


if __name__ == "__main__":
    stage.run(main)
