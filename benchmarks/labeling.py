"""Labeling throughput: the batched engine (all rollouts of a chunk of snapshots in lock-step) vs a naive
per-rollout loop (each rollout alone, one forward pass per candidate), same snapshots, same label params.

    python benchmarks/labeling.py [--snapshots 32] [--naive-snapshots 3]
"""

from __future__ import annotations

import argparse
import time

from teachable.config import load_params
from teachable.labeling.label import label_chunk
from teachable.policy.hf import HFPolicy, NaivePolicy
from teachable.records import Snapshot, read_jsonl
from teachable.rollout import RolloutEngine
from teachable.teacher import OracleTeacher


def per_minute(snapshots, policy, batch, chunk, params) -> tuple[float, list]:
    env, p = params.env, params.label
    engine = RolloutEngine(policy, env.name, env.max_steps, env.history_len, p.temperature, batch, record_steps=False)
    start, records = time.perf_counter(), []
    for i in range(0, len(snapshots), chunk):
        records += label_chunk(snapshots[i : i + chunk], policy, OracleTeacher(), engine, p, params.seed)
    return len(snapshots) / ((time.perf_counter() - start) / 60), records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snapshots", type=int, default=32)
    parser.add_argument("--naive-snapshots", type=int, default=3)
    args = parser.parse_args()
    params = load_params()
    snapshots = read_jsonl("data/snapshots.jsonl", Snapshot)[: args.snapshots]
    policy = HFPolicy.load(params.student.dir, batch_size=params.student.score_batch_size)
    naive_rate, naive = per_minute(snapshots[: args.naive_snapshots], NaivePolicy(policy), 1, 1, params)
    batched_rate, batched = per_minute(snapshots, policy, params.label.batch_size, params.label.chunk_size, params)
    labels = lambda records: [(r["leverage"], r["cpt"]) for r in records]
    same = labels(naive) == labels(batched[: len(naive)])
    p = params.label
    print(f"rollouts per snapshot: {p.n_student_rollouts + p.n_force_rollouts + p.n_expert_rollouts} leverage + "
          f"{5 * p.n_per_condition} CPT; horizon {params.env.max_steps}; naive and batched labels identical: {same}")
    print(f"naive   (one rollout at a time, 1 forward/candidate): {naive_rate:7.1f} snapshots/min "
          f"({args.naive_snapshots} snapshots)")
    print(f"batched (chunks of {p.chunk_size} snapshots, {p.batch_size} concurrent):    {batched_rate:7.1f} "
          f"snapshots/min ({len(snapshots)} snapshots)")
    print(f"batched / naive = {batched_rate / naive_rate:.1f}x")


if __name__ == "__main__":
    main()
