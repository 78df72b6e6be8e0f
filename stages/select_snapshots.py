"""Stage `select` (phase 5, H7): at budget `select.budget`, choose training snapshots by each method (random,
entropy, predictor, oracle; see `teachable.selection`), train `train.n_seeds` LoRA adapters per method with the
`train` recipe, and evaluate each on phase 3's held-out panels (the base student's episodes are phase 3's own,
same specs and sample seeds).

Only train-side snapshots are candidates; a budget larger than their number, or a candidate without a prediction
in `reports/phase4/oof_predictions.csv`, ends the stage with one line naming them (exit code 2). Outputs
`models/phase5/<method>/seed-<k>/`, `reports/phase5/selection_summary.json` (DVC metrics: per method the gain and
retention with paired intervals, the held-out ELP of its selection; the gates `selection_ordering`, predictor >
entropy > random as paired comparisons, and `selection_retention`, non-inferiority per method) and
`selection_results.csv`. Each method's seeds are nested MLflow runs under one `select` parent run.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from teachable import stage
from teachable.config import Params
from teachable.evaluation import (EvalModel, evaluate_models, evaluation_plan, overall_task_results,
                                  per_quadrant_results, retention_results, selection_gates)
from teachable.matrix import training_records, training_seed
from teachable.records import read_jsonl, write_json
from teachable.selection import SelectionError, check_budget, check_predictions, held_out_elp, select
from teachable.student import load_student, student_path
from teachable.tasks import training_snapshots
from teachable.tracking import log_to_run, matrix_cell_run, stage_run
from teachable.training import train_lora

SNAPSHOTS, RETENTION = "data/quadrant_snapshots.jsonl", "data/retention_panel.jsonl"
PREDICTIONS, PHASE3_EPISODES = "reports/phase4/oof_predictions.csv", "reports/phase3/episodes.csv"
MODELS, REPORTS = Path("models/phase5"), Path("reports/phase5")


def train_method(params: Params, method: str, chosen: list[dict]) -> list[EvalModel]:
    """`train.n_seeds` adapters on the method's selection (seed k: its own initialisation), one EvalModel each."""
    data = training_records(chosen, params.select.format, params.train.method)
    key = params.model_dump(mode="json", include={"seed", "student", "train", "select"})
    models = []
    for k in range(params.train.n_seeds):
        out, seed = MODELS / method / f"seed-{k}", training_seed(params.seed, k)
        checkpoints = stage.scratch_path(f"checkpoints-select-{method}-{k}", {**key, "data": data})
        with matrix_cell_run("select", f"{method}/seed-{k}", key) as mlflow:
            # the per-step curves and `train_loss` (once) go to this run through train_lora's MLflow callback
            metrics = train_lora(student_path(params.student), data, params.train, out, seed=seed,
                                 checkpoint_dir=checkpoints)
            run_id = mlflow.active_run().info.run_id
        metrics.update(method=method, seed_index=k, seed=seed, n_records=len(data), mlflow_run_id=run_id,
                       snapshot_ids=[r["snapshot_id"] for r in chosen])
        write_json(out / "metrics.json", metrics)
        models.append(EvalModel(f"select-{method}", "selection", str(out), mlflow_run_id=run_id, seed=k))
    return models


def read_predictions(path: str, records: list[dict]) -> dict[str, float]:
    """The predictor's out-of-fold ELP per snapshot; every training snapshot must have one (SelectionError naming
    the snapshots and the file, not a traceback)."""
    frame = pd.read_csv(path, dtype={"snapshot_id": str})
    absent = [c for c in ("snapshot_id", "ELP_pred") if c not in frame.columns]
    if absent:
        raise SelectionError(f"{path} has no column {absent[0]!r}; run `dvc repro predictor`")
    predicted = dict(zip(frame.snapshot_id, frame.ELP_pred))
    check_predictions(records, predicted, path)
    return predicted


def summarise(rows: pd.DataFrame, chosen: dict[str, list[dict]], params: Params) -> tuple[dict, pd.DataFrame]:
    overall = overall_task_results(rows).set_index("model")
    retention = retention_results(rows).set_index("model")
    per_quadrant = per_quadrant_results(rows)
    methods = {}
    for method, snapshots in chosen.items():
        m = f"select-{method}"
        methods[method] = {
            "snapshot_ids": [r["snapshot_id"] for r in snapshots], "n_records": len(snapshots),
            "n_seeds": int(overall.n_seeds[m]), "success": float(overall.success[m]),
            "ci_low": float(overall.ci_low[m]), "ci_high": float(overall.ci_high[m]), "delta": float(overall.delta[m]),
            "delta_ci": [float(overall.delta_ci_low[m]), float(overall.delta_ci_high[m])],
            "retention": float(retention.success[m]), "retention_delta": float(retention.delta[m]),
            "retention_delta_ci": [float(retention.delta_ci_low[m]), float(retention.delta_ci_high[m])],
            "per_quadrant": dict(per_quadrant[per_quadrant.model == m][["eval_quadrant", "success"]].values),
            "held_out_elp": held_out_elp(snapshots),
        }
    summary = {"budget": params.select.budget, "format": params.select.format,
               "base_success": float(overall.success["base"]), "methods": methods,
               "gates": selection_gates(rows, {m: f"select-{m}" for m in chosen}, params.gates)}
    table = pd.DataFrame([{"method": m, **{k: v for k, v in r.items()
                                           if k not in ("snapshot_ids", "per_quadrant", "delta_ci", "retention_delta_ci")},
                           "delta_ci_low": r["delta_ci"][0], "delta_ci_high": r["delta_ci"][1]}
                          for m, r in methods.items()])
    return summary, table


def main(params: Params) -> None:
    s = params.select
    records = training_snapshots(read_jsonl(SNAPSHOTS))
    check_budget(len(records), s.budget)  # before any work: a budget beyond the pool makes every method alike
    predicted = read_predictions(PREDICTIONS, records) if "predictor" in s.methods else None
    chosen = {m: select(records, m, s.budget, params.seed, predicted, PREDICTIONS) for m in s.methods}
    models = [model for m, snapshots in chosen.items() for model in train_method(params, m, snapshots)]
    base_rows = pd.read_csv(PHASE3_EPISODES, keep_default_na=False)
    key = {**params.model_dump(mode="json", include={"seed", "env", "shop", "student", "train", "evaluate", "select"}),
           "models": [m.mlflow_run_id for m in models]}
    scratch = stage.ScratchLog("select", key)
    with stage_run("select", key) as mlflow:
        plan = evaluation_plan(params, read_jsonl(SNAPSHOTS), read_jsonl(RETENTION))
        rows = evaluate_models(load_student(params.student), models, scratch=scratch, **plan)
        base_rows = base_rows[base_rows.model == "base"]
        if set(base_rows.item) != set(rows.item):
            raise ValueError(f"{PHASE3_EPISODES} was not made with these `evaluate` params; run `dvc repro evaluate`")
        rows = pd.concat([base_rows, rows], ignore_index=True)
        summary, table = summarise(rows, chosen, params)
        REPORTS.mkdir(parents=True, exist_ok=True)
        write_json(REPORTS / "selection_summary.json", summary)
        table.to_csv(REPORTS / "selection_results.csv", index=False)
        mlflow.log_metrics({f"{m}_delta": v["delta"] for m, v in summary["methods"].items()})
        mlflow.log_artifacts(str(REPORTS), artifact_path="phase5")
        for model in models:  # each seed's run gets its method's numbers (means over the seeds)
            result = summary["methods"][model.model.removeprefix("select-")]
            log_to_run(model.mlflow_run_id, {"eval_success": result["success"], "eval_delta": result["delta"],
                                             "retention_delta": result["retention_delta"]})
    scratch.remove()


if __name__ == "__main__":
    stage.run(main)
