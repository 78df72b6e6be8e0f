"""Stage `train` (phase 2): one cell of the training matrix, `python stages/train.py CELL` where CELL is
`Q1-demo` ... `Q4-contrast` (the 12 quadrant x format cells), `random` / `all` (the baselines), or `recovery`
(the extra cell on expert recovery trajectories).

Output `models/phase2/<CELL>/` (LoRA adapter as safetensors + `metrics.json`). A cell with fewer than
`train.min_records` records is trained on what exists and flagged `small: true` (an empty one is recorded with
`trained: false`), never skipped silently. The MLflow run is
nested under one parent run per matrix (same git revision and params), so cells compare side by side.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from teachable import stage
from teachable.config import Params
from teachable.matrix import BASELINES, baseline_records, cell_records
from teachable.records import read_jsonl, write_json
from teachable.student import student_path
from teachable.tasks import training_snapshots
from teachable.tracking import matrix_cell_run
from teachable.training import train_lora

LABELED, RECOVERY = "data/quadrant_snapshots.jsonl", "data/recovery_trajectories.jsonl"
log = logging.getLogger("train")


def main(params: Params) -> None:
    cell = sys.argv[1]
    records = training_snapshots(read_jsonl(LABELED))  # held-out snapshots are phase 3's
    train = params.train
    if cell == "recovery":  # demonstrations only (no rejected action to pair with): always SFT
        data, train = read_jsonl(RECOVERY), train.model_copy(update={"method": "sft"})
    elif cell in BASELINES:
        data = baseline_records(records, cell, params.seed, train.method)
    else:
        quadrant, fmt = cell.split("-")
        data = cell_records(records, quadrant, fmt, train.method)
    out = Path("models/phase2") / cell
    key = params.model_dump(mode="json", include={"seed", "student", "train"})
    checkpoints = stage.scratch_path(f"checkpoints-{cell}", {**key, "data": data})
    with matrix_cell_run("train", cell, key) as mlflow:
        if data:
            metrics = train_lora(student_path(params.student), data, train, out, seed=params.seed,
                                 checkpoint_dir=checkpoints)
            mlflow.log_metric("train_loss", metrics["train_loss"])
            mlflow.log_artifacts(str(out), artifact_path="adapter")
        else:  # an empty quadrant: nothing to train on, recorded as such (later stages use the base model)
            log.warning("cell %s has no records: no adapter trained", cell)
            metrics = {"method": train.method, "train_loss": None, "final_loss": None, "steps": 0,
                       "seconds": 0.0, "adapter_dir": None}
        metrics.update(run_id=cell, n_records=len(data), small=len(data) < train.min_records,
                       trained=bool(data), mlflow_run_id=mlflow.active_run().info.run_id,
                       snapshot_ids=sorted({d["snapshot_id"] for d in data}))
        mlflow.log_metric("n_records", len(data))
    write_json(out / "metrics.json", metrics)


if __name__ == "__main__":
    stage.run(main)
