"""Phase 5 runs: train each selection method's adapters (`train.n_seeds` of them, the `train`
recipe) and summarise their evaluation against the base on phase 3's panels, with the phase 5
gates."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from teachable.core import resume
from teachable.core.params import Params
from teachable.core.records import write_json
from teachable.core.tracking import matrix_cell_run
from teachable.evaluation.panels import EvalModel
from teachable.evaluation.selection import SelectionError, check_predictions, held_out_elp
from teachable.evaluation.results import (
    overall_task_results,
    per_quadrant_results,
    retention_results,
    selection_gates,
)
from teachable.policy.student import student_path
from teachable.training.lora import train_lora
from teachable.training.matrix import training_records, training_seed


def train_method(
    params: Params, method: str, chosen: list[dict], models_dir: Path
) -> list[EvalModel]:
    """`train.n_seeds` adapters on the method's selection (seed k: its own initialisation), one
    EvalModel each."""
    data = training_records(chosen, params.select.format, params.train.method)
    key = params.model_dump(mode="json", include={"seed", "student", "train", "select"})
    models = []
    for k in range(params.train.n_seeds):
        out, seed = models_dir / method / f"seed-{k}", training_seed(params.seed, k)
        checkpoints = resume.scratch_path(
            f"checkpoints-select_snapshots-{method}-{k}", {**key, "data": data}
        )
        with matrix_cell_run("select_snapshots", f"{method}/seed-{k}", key) as mlflow:
            # the per-step curves and `train_loss` (once) go to this run through train_lora's MLflow
            # callback
            metrics = train_lora(
                student_path(params.student),
                data,
                params.train,
                out,
                seed=seed,
                checkpoint_dir=checkpoints,
            )
            run_id = mlflow.active_run().info.run_id
        metrics.update(
            method=method,
            seed_index=k,
            seed=seed,
            n_records=len(data),
            mlflow_run_id=run_id,
            snapshot_ids=[r["snapshot_id"] for r in chosen],
        )
        write_json(out / "metrics.json", metrics)
        models.append(
            EvalModel(f"select-{method}", "selection", str(out), mlflow_run_id=run_id, seed=k)
        )
    return models


def read_predictions(path: str, records: list[dict]) -> dict[str, float]:
    """The predictor's out-of-fold ELP per snapshot; every training snapshot must have one
    (SelectionError naming the snapshots and the file, not a traceback)."""
    frame = pd.read_csv(path, dtype={"snapshot_id": str})
    absent = [c for c in ("snapshot_id", "ELP_pred") if c not in frame.columns]
    if absent:
        raise SelectionError(f"{path} has no column {absent[0]!r}; run `dvc repro predictor`")
    predicted = dict(zip(frame.snapshot_id, frame.ELP_pred))
    check_predictions(records, predicted, path)
    return predicted


def summarise(
    rows: pd.DataFrame, chosen: dict[str, list[dict]], params: Params
) -> tuple[dict, pd.DataFrame]:
    """`selection_summary.json` (per method: selection, gain and retention with paired intervals,
    held-out ELP; the phase 5 gates) and the `selection_results.csv` table, from the base's and the
    methods' episode rows."""
    overall = overall_task_results(rows).set_index("model")
    retention = retention_results(rows).set_index("model")
    per_quadrant = per_quadrant_results(rows)

    # no retention panel: a student that solved no task
    def retained(m: str, column: str) -> float | None:
        return float(retention[column][m]) if m in retention.index else None

    methods = {}
    for method, snapshots in chosen.items():
        m = f"select-{method}"
        methods[method] = {
            "snapshot_ids": [r["snapshot_id"] for r in snapshots],
            "n_records": len(snapshots),
            "n_seeds": int(overall.n_seeds[m]),
            "success": float(overall.success[m]),
            "ci_low": float(overall.ci_low[m]),
            "ci_high": float(overall.ci_high[m]),
            "delta": float(overall.delta[m]),
            "delta_ci": [float(overall.delta_ci_low[m]), float(overall.delta_ci_high[m])],
            "retention": retained(m, "success"),
            "retention_delta": retained(m, "delta"),
            "retention_delta_ci": [retained(m, "delta_ci_low"), retained(m, "delta_ci_high")],
            "per_quadrant": dict(
                per_quadrant[per_quadrant.model == m][["eval_quadrant", "success"]].values
            ),
            "held_out_elp": held_out_elp(snapshots),
        }
    summary = {
        "budget": params.select.budget,
        "format": params.select.format,
        "base_success": float(overall.success["base"]),
        "methods": methods,
        "gates": selection_gates(rows, {m: f"select-{m}" for m in chosen}, params.gates),
    }
    table = pd.DataFrame(
        [
            {
                "method": m,
                **{
                    k: v
                    for k, v in r.items()
                    if k not in ("snapshot_ids", "per_quadrant", "delta_ci", "retention_delta_ci")
                },
                "delta_ci_low": r["delta_ci"][0],
                "delta_ci_high": r["delta_ci"][1],
            }
            for m, r in methods.items()
        ]
    )
    return summary, table
