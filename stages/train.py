"""Stage `train` (phase 2): one cell of the training matrix, `python stages/train.py CELL` where
CELL is `Q1-demo` ... `Q4-contrast` (the 12 quadrant x format cells), `random` / `all` (the
baselines), or `recovery` (the extra cell on expert recovery trajectories).

Every cell is trained `train.n_seeds` times (`teachable.training.matrix`: seed k has its own
subsample and initialisation) and, with `train.records_per_cell`, on the same number of records as
every other cell (`all` and `recovery` are not subsampled). Output `models/phase2/<CELL>/seed-<k>/`
(LoRA adapter as safetensors + `metrics.json`) and `models/phase2/<CELL>/metrics.json` (the cell:
its seeds, records, losses). A cell with fewer than `train.min_records` records is trained on what
exists and flagged `small: true` (an empty one is recorded with `trained: false`), never skipped
silently. Each seed's MLflow run is nested under one parent run per matrix (same git revision and
params), so cells compare side by side.

Multi-GPU: `train.launcher: accelerate launch --config_file teachable/training/accelerate/ddp.yaml`
(or fsdp.yaml) runs it under accelerate; every process trains, the main one alone writes metrics and
MLflow runs, and `train.batch_size` stays the global batch (split over the processes).
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

from teachable import stage
from teachable.core import resume
from teachable.core.params import Params, TrainParams
from teachable.training.matrix import (
    BASELINES,
    baseline_records,
    cell_records,
    cell_size,
    training_seed,
)
from teachable.core.records import read_jsonl, write_json
from teachable.training.learning import adapter_shift, pooled_shift
from teachable.policy.hf import HFPolicy
from teachable.policy.student import student_path
from teachable.core.tasks import training_snapshots
from teachable.core.tracking import matrix_cell_run
from teachable.training.lora import train_lora, training_processes

LABELED, RECOVERY = "data/quadrant_snapshots.jsonl", "data/recovery_trajectories.jsonl"
log = logging.getLogger("train")


def cell_data(
    cell: str, records: list[dict], params: Params, seed: int
) -> tuple[list[dict], TrainParams]:
    """The records a cell trains on with training seed `seed`, and the recipe (recovery is always
    SFT: its demonstrations have no rejected action to pair with)."""
    train = params.train
    if cell == "recovery":
        return read_jsonl(RECOVERY), train.model_copy(update={"method": "sft"})
    size = cell_size(records, train.quadrants, train.records_per_cell)
    if cell in BASELINES:
        return baseline_records(records, cell, seed, train.method, size), train
    quadrant, fmt = cell.split("-")
    return cell_records(records, quadrant, fmt, train.method, size, seed), train


def train_seed(params: Params, cell: str, k: int, records: list[dict], out: Path) -> dict | None:
    seed = training_seed(params.seed, k)
    data, train = cell_data(cell, records, params, seed)
    key = params.model_dump(mode="json", include={"seed", "student", "train"})
    checkpoints = resume.scratch_path(f"checkpoints-{cell}-{k}", {**key, "data": data})
    # another process of `accelerate launch`: its share of the steps only
    if not training_processes().is_main_process:
        if data:
            train_lora(
                student_path(params.student),
                data,
                train,
                out,
                seed=seed,
                checkpoint_dir=checkpoints,
                report=False,
            )
        return None
    with matrix_cell_run("train", f"{cell}/seed-{k}", key) as mlflow:
        if data:
            # the per-step curves and `train_loss` (once) go to this run through train_lora's MLflow
            # callback
            metrics = train_lora(
                student_path(params.student),
                data,
                train,
                out,
                seed=seed,
                checkpoint_dir=checkpoints,
            )
            mlflow.log_artifacts(str(out), artifact_path="adapter")
        # an empty quadrant: nothing to train on, recorded as such (later stages use the base model)
        else:
            log.warning("cell %s has no records: no adapter trained", cell)
            metrics = {
                "method": train.method,
                "train_loss": None,
                "final_loss": None,
                "steps": 0,
                "seconds": 0.0,
                "adapter_dir": None,
            }
        mlflow.log_metric("n_records", len(data))
        metrics.update(
            seed_index=k,
            seed=seed,
            n_records=len(data),
            trained=bool(data),
            mlflow_run_id=mlflow.active_run().info.run_id,
            snapshot_ids=sorted({d["snapshot_id"] for d in data}),
        )
        if data:  # did the adapter move the student where it was trained?
            by_id = {r["snapshot_id"]: r for r in records}
            policy = base_policy(
                student_path(params.student), params.student.device, params.student.dtype
            )
            metrics["learning"] = adapter_shift(
                policy, out, [by_id[i] for i in metrics["snapshot_ids"] if i in by_id]
            )
            mlflow.log_metrics({"p_expert_delta": metrics["learning"]["delta"]})
    write_json(out / "metrics.json", metrics)
    return {**metrics, "checkpoints": checkpoints}


@functools.cache
def base_policy(path: str, device: str, dtype: str) -> HFPolicy:
    """The student, loaded once per stage for the adapters' learning check."""
    return HFPolicy.load(path, device, dtype)


def main(params: Params) -> None:
    cell = sys.argv[1]
    records = training_snapshots(read_jsonl(LABELED))  # held-out snapshots are phase 3's
    out = Path("models/phase2") / cell
    seeds = [
        train_seed(params, cell, k, records, out / f"seed-{k}") for k in range(params.train.n_seeds)
    ]
    if not training_processes().is_main_process:
        return  # the main process records the cell and its MLflow runs, once
    losses = [s["train_loss"] for s in seeds if s["train_loss"] is not None]
    n_records = seeds[0]["n_records"]
    write_json(
        out / "metrics.json",
        {
            "run_id": cell,
            "method": seeds[0]["method"],
            "n_seeds": len(seeds),
            "n_records": n_records,
            "small": n_records < params.train.min_records,
            "trained": seeds[0]["trained"],
            "train_loss": sum(losses) / len(losses) if losses else None,
            "final_loss": seeds[0]["final_loss"],
            "steps": seeds[0]["steps"],
            "seconds": round(sum(s["seconds"] for s in seeds), 3),
            "mlflow_run_id": seeds[0]["mlflow_run_id"],
            "snapshot_ids": sorted({i for s in seeds for i in s["snapshot_ids"]}),
            "learning": pooled_shift([s.get("learning") for s in seeds]),
            "seeds": [
                {
                    k: s[k]
                    for k in (
                        "seed_index",
                        "seed",
                        "train_loss",
                        "final_loss",
                        "steps",
                        "mlflow_run_id",
                    )
                }
                | {
                    "dir": str(out / f"seed-{s['seed_index']}"),
                    "learning": s.get("learning"),
                    "snapshot_ids": s["snapshot_ids"],
                }
                for s in seeds
            ],
        },
    )
    # the cell is done: its seeds' checkpoints (kept until now to resume a killed cell) go
    for s in seeds:
        resume.remove_scratch(s["checkpoints"])


if __name__ == "__main__":
    stage.run(main)
