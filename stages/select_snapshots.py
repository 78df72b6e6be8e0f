"""Stage `select` (phase 5, H7): at budget `select.budget`, choose training snapshots by each method (random,
entropy, predictor, oracle; see `teachable.selection`), train one LoRA adapter per method with the `train` recipe,
and evaluate each on phase 3's held-out panels (the base student's episodes are phase 3's own, same specs).

Only train-side snapshots are candidates. Outputs `models/phase5/<method>/`, `reports/phase5/selection_summary.json`
(DVC metrics: reliability gain and retention per method, and the seeds' ordering check predictor > entropy > random)
and `selection_results.csv`. Each method is a nested MLflow run under one `select` parent run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from teachable import stage
from teachable.config import Params
from teachable.evaluation import (EvalModel, evaluate_models, evaluation_plan, overall_task_results,
                                  per_quadrant_results, retention_results)
from teachable.matrix import training_records
from teachable.records import read_jsonl, write_json
from teachable.selection import select
from teachable.student import load_student, student_path
from teachable.tasks import training_snapshots
from teachable.tracking import log_to_run, matrix_cell_run, stage_run
from teachable.training import train_lora

SNAPSHOTS, RETENTION = "data/quadrant_snapshots.jsonl", "data/retention_panel.jsonl"
PREDICTIONS, PHASE3_EPISODES = "reports/phase4/oof_predictions.csv", "reports/phase3/episodes.csv"
MODELS, REPORTS = Path("models/phase5"), Path("reports/phase5")


def train_method(params: Params, method: str, chosen: list[dict]) -> EvalModel:
    data = training_records(chosen, params.select.format, params.train.method)
    out = MODELS / method
    key = params.model_dump(mode="json", include={"seed", "student", "train", "select"})
    checkpoints = stage.scratch_path(f"checkpoints-select-{method}", {**key, "data": data})
    with matrix_cell_run("select", method, key) as mlflow:
        metrics = train_lora(student_path(params.student), data, params.train, out, seed=params.seed,
                             checkpoint_dir=checkpoints)
        run_id = mlflow.active_run().info.run_id
        mlflow.log_metric("train_loss", metrics["train_loss"])
    metrics.update(method=method, n_records=len(data), mlflow_run_id=run_id,
                   snapshot_ids=[r["snapshot_id"] for r in chosen])
    write_json(out / "metrics.json", metrics)
    return EvalModel(f"select-{method}", "selection", str(out), mlflow_run_id=run_id)


def summarise(rows: pd.DataFrame, chosen: dict[str, list[dict]], params: Params) -> tuple[dict, pd.DataFrame]:
    overall = overall_task_results(rows).set_index("model")
    retention = retention_results(rows).set_index("model")
    per_quadrant = per_quadrant_results(rows)
    methods = {}
    for method, snapshots in chosen.items():
        m = f"select-{method}"
        methods[method] = {
            "snapshot_ids": [r["snapshot_id"] for r in snapshots], "n_records": len(snapshots),
            "success": float(overall.success[m]), "ci_low": float(overall.ci_low[m]),
            "ci_high": float(overall.ci_high[m]), "delta": float(overall.delta[m]),
            "retention": float(retention.success[m]), "retention_delta": float(retention.delta[m]),
            "per_quadrant": dict(per_quadrant[per_quadrant.model == m][["eval_quadrant", "success"]].values),
            "mean_true_elp": round(float(np.mean([r["cpt"]["ELP_net"] for r in snapshots])), 6),
        }
    gain = {m: v["delta"] for m, v in methods.items()}
    ordering = {f"{a}>{b}": (gain[a] > gain[b]) if a in gain and b in gain else None
                for a, b in (("predictor", "entropy"), ("entropy", "random"))}
    checked = [v for v in ordering.values() if v is not None]
    summary = {"budget": params.select.budget, "format": params.select.format,
               "base_success": float(overall.success["base"]), "methods": methods,
               "ordering": {**ordering, "pass": bool(checked) and all(checked)}}
    table = pd.DataFrame([{"method": m, **{k: v for k, v in r.items() if k not in ("snapshot_ids", "per_quadrant")}}
                          for m, r in methods.items()])
    return summary, table


def main(params: Params) -> None:
    s = params.select
    records = training_snapshots(read_jsonl(SNAPSHOTS))
    predicted = None
    if "predictor" in s.methods:
        frame = pd.read_csv(PREDICTIONS)
        predicted = dict(zip(frame.snapshot_id, frame.ELP_pred))
    chosen = {m: select(records, m, s.budget, params.seed, predicted) for m in s.methods}
    models = [train_method(params, m, snapshots) for m, snapshots in chosen.items()]
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
        for model, (method, result) in zip(models, summary["methods"].items()):
            log_to_run(model.mlflow_run_id, {"eval_success": result["success"], "eval_delta": result["delta"],
                                             "retention_delta": result["retention_delta"]})
    scratch.remove()


if __name__ == "__main__":
    stage.run(main)
