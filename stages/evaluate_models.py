"""Stage `evaluate_models` (phase 3): the base student and every phase 2 model on the same held-out
episodes.

Models: the base student and exactly the phase 2 models the params define (`train.quadrants` x
`train.formats`, `train.baselines`, `recovery`); a directory under models/phase2 from earlier params
is left out, a defined model that was not trained is an error naming it.

Panels: `evaluate.n_tasks` held-out tasks, `n_snapshots_per_quadrant` held-out snapshots per
quadrant (their tasks never train anything) and the retention panel, `n_rollouts` each, for every
training seed of every model, the student acting in `rollouts.action_mode` (score or generate;
labeling stays in score mode). Outputs `reports/phase3/*.csv` (overall, per quadrant, transfer
matrix, retention, stuckness; per model the mean over its seeds with intervals and paired deltas,
and in the overall table the parse-failure rate; `pass_k.csv`: pass^1 .. pass^min(n_rollouts, 8) on
the held-out tasks), `episodes.csv` (one row per episode, with its replies and parse failures),
`metrics.json` (headline DVC metrics, `pass_k` of the base and the chosen model, `parse_failures`
per model, and the four phase 3 gates as tests, `teachable.gates.evaluation`). Each model's headline
numbers also go to its training runs in MLflow. Resumable per model and seed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from teachable import stage
from teachable.core import resume
from teachable.core.params import Params
from teachable.evaluation.learning_panel import learning_results, learning_summary
from teachable.evaluation.panels import (
    ROWS_VERSION,
    evaluate_models,
    evaluation_plan,
    learning_specs,
    matrix_models,
)
from teachable.evaluation.results import headline, phase3_gates, tables
from teachable.core.records import read_jsonl, write_json
from teachable.training.matrix import phase2_cells
from teachable.policy.student import load_student
from teachable.core.tracking import log_to_run, stage_run

SNAPSHOTS, RETENTION, REPORTS = (
    "data/quadrant_snapshots.jsonl",
    "data/retention_panel.jsonl",
    Path("reports/phase3"),
)


def main(params: Params) -> None:
    models = matrix_models("models/phase2", phase2_cells(params.train))
    action_mode = params.rollouts.action_mode
    key = {
        **params.model_dump(
            mode="json", include={"seed", "env", "shop", "retail", "student", "train", "evaluate"}
        ),
        "models": [(m.key, m.mlflow_run_id) for m in models],
        "action_mode": action_mode,
        "label_horizon": params.label.horizon,
        "rows_version": ROWS_VERSION,
    }
    scratch = resume.ScratchLog("evaluate_models", key)
    with stage_run("evaluate_models", key) as mlflow:
        snapshots = read_jsonl(SNAPSHOTS)
        plan = evaluation_plan(params, snapshots, read_jsonl(RETENTION))
        rows = evaluate_models(
            load_student(params.student),
            models,
            scratch=scratch,
            extra=learning_specs(models, snapshots, params),
            **plan,
        )
        REPORTS.mkdir(parents=True, exist_ok=True)
        rows.to_csv(REPORTS / "episodes.csv", index=False)
        results = {**tables(rows), "learning_results": learning_results(rows)}
        for name, table in results.items():
            table.to_csv(REPORTS / f"{name}.csv", index=False)
        metrics = {
            **headline(results, phase3_gates(rows, params.gates, params.seed)),
            "learning": learning_summary(results["learning_results"]),
            "temperature": params.evaluate.temperature,
            "action_mode": action_mode,
        }
        write_json(REPORTS / "metrics.json", metrics)
        mlflow.log_metrics(
            {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None}
        )
        mlflow.log_artifacts(str(REPORTS), artifact_path="phase3")
        overall = results["overall_task_results"].set_index("model")
        retention = results["retention_results"].set_index("model")
        stuck = results["stuckness_results"].set_index("model")
        for m in models:  # each training seed's run gets its model's numbers (means over the seeds)
            if m.mlflow_run_id:
                # .get: a table can lack a model (no retention panel when the student solved no task
                # in phase 0)
                numbers = {
                    "eval_success": overall.success.get(m.model),
                    "eval_delta": overall.delta.get(m.model),
                    "retention_delta": retention.delta.get(m.model)
                    if "delta" in retention
                    else None,
                    "loop_rate": stuck.loop_rate.get(m.model),
                    "parse_failure_rate": overall.parse_failure_rate.get(m.model),
                    "malformed_rate": overall.malformed_rate.get(m.model),
                }
                log_to_run(
                    m.mlflow_run_id,
                    {k: v for k, v in numbers.items() if v is not None and pd.notna(v)},
                )
    scratch.remove()


if __name__ == "__main__":
    stage.run(main)
