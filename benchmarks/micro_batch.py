"""Phase 1B's untrained arms (format patch, placebo, base; `micro_train.n_*_rollouts` each) for the
same snapshots at two engine batch sizes, side by side in one run: episodes a second and whether the
outcomes agree (they must: an episode is a function of its spec, not of its batch).

    python benchmarks/micro_batch.py [--snapshots 12] [--batches 64,256] [--root DIR]

`--root`: a project folder with params.yaml, data/quadrant_snapshots.jsonl and the student (after
`dvc repro quadrants`).
"""

from __future__ import annotations

import argparse
import os
import time

from teachable.core.params import load_params
from teachable.core.records import read_jsonl
from teachable.policy.hf import HFPolicy
from teachable.rollout.engine import RolloutEngine
from teachable.training.microtrain import measure_untrained, micro_engine_kwargs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--snapshots", type=int, default=12)
    parser.add_argument("--batches", default="64,256")
    parser.add_argument("--root", default=".")
    args = parser.parse_args()
    os.chdir(args.root)
    params = load_params()
    p = params.micro_train
    records = read_jsonl("data/quadrant_snapshots.jsonl")[: args.snapshots]
    policy = HFPolicy.load(params.student.dir, batch_size=params.student.score_batch_size)
    episodes = len(records) * (2 * p.n_cpt_rollouts + p.n_validation_rollouts)
    results = {}
    for batch in (int(b) for b in args.batches.split(",")):
        engine = RolloutEngine(
            policy, **micro_engine_kwargs(params.env, params.label.temperature, batch)
        )
        start = time.perf_counter()
        outcomes = measure_untrained(engine, records, p, params.seed, params.label.horizon)
        seconds = time.perf_counter() - start
        results[batch] = (seconds, outcomes)
        print(
            f"batch {batch}: {episodes} episodes in {seconds:.1f} s, "
            f"{episodes / seconds:.1f} episodes/s"
        )
    (b0, (s0, o0)), *rest = results.items()
    for b, (s, o) in rest:
        print(f"batch {b} / batch {b0} seconds: {s / s0:.2f}; outcomes identical: {o == o0}")


if __name__ == "__main__":
    main()
