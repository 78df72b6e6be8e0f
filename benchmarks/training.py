"""Seconds per phase 1B micro-run and per phase 2 matrix cell at pilot size, on this machine.

    python benchmarks/training.py [--micro-runs 4] [--cells Q1-demo Q2-hint all]

Needs the pilot's `data/quadrant_snapshots.jsonl` and `models/student` (run `dvc repro quadrants`
first).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from teachable.core.params import load_params
from teachable.training.matrix import BASELINES, baseline_records, cell_records
from teachable.training.microtrain import (
    micro_engine_kwargs,
    micro_run,
    micro_train_params,
    sample_per_quadrant,
)
from teachable.core.records import read_jsonl
from teachable.policy.student import load_student
from teachable.training.lora import train_lora


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--micro-runs", type=int, default=4)
    parser.add_argument("--cells", nargs="+", default=["Q1-demo", "Q2-hint", "all"])
    args = parser.parse_args()
    params = load_params()
    env, mp = params.env, params.micro_train
    records = read_jsonl("data/quadrant_snapshots.jsonl")
    policy = load_student(params.student)
    train = micro_train_params(params.train, mp)
    engine_kwargs = micro_engine_kwargs(env, params.label.temperature)
    with tempfile.TemporaryDirectory() as scratch:
        sample = sample_per_quadrant(records, 1, params.seed)[: args.micro_runs]
        start = time.perf_counter()
        for r in sample:
            micro_run(
                policy,
                r,
                train,
                mp.n_validation_rollouts,
                params.label.horizon,
                engine_kwargs,
                Path(scratch) / r["snapshot_id"],
                params.seed,
            )
        per_micro = (time.perf_counter() - start) / len(sample)
        print(
            f"micro-run ({mp.n_steps} LoRA steps + 2 x {mp.n_validation_rollouts} rollouts): "
            f"{per_micro:6.2f} s"
        )
        for cell in args.cells:
            data = (
                baseline_records(records, cell, params.seed)
                if cell in BASELINES
                else cell_records(records, *cell.split("-"))
            )
            start = time.perf_counter()
            m = train_lora(
                params.student.dir,
                data,
                params.train,
                Path(scratch) / cell,
                seed=params.seed,
                report=False,
                checkpoint_dir=Path(scratch) / f"{cell}-ckpt",
            )
            print(
                f"matrix cell {cell:12s} ({m['n_records']:4d} records, {m['steps']:4d} steps): "
                f"{time.perf_counter() - start:6.2f} s"
            )


if __name__ == "__main__":
    main()
