"""Labeling throughput: every arm's rollouts run separately vs run once per distinct episode
(`run_shared`: arms on the same sample seed that take the same first action are the same episode),
same snapshots, same label params, both through the batched engine; the labels must be identical.

    python benchmarks/labeling.py [--snapshots 48]
"""

from __future__ import annotations

import argparse
import time

from teachable.core.params import load_params
from teachable.labeling.label import label_chunk
from teachable.policy.hf import HFPolicy
from teachable.core.records import Snapshot, read_jsonl
from teachable.rollout.engine import RolloutEngine
from teachable.teacher import OracleTeacher


class SeparateRuns(RolloutEngine):
    """The engine without sharing: every spec runs as its own episode."""

    def run_shared(self, specs):
        self.episodes_run = getattr(self, "episodes_run", 0) + len(specs)
        return self.run(specs)


class CountingEngine(RolloutEngine):
    def run(self, specs, on_episode=None):
        if all(s.horizon != 1 for s in specs):  # not the one-step probe of first actions
            self.episodes_run = getattr(self, "episodes_run", 0) + len(specs)
        return super().run(specs, on_episode)


def label_all(engine_class, snapshots, policy, params) -> tuple[list[dict], float, int]:
    env, p = params.env, params.label
    engine = engine_class(
        policy,
        env.name,
        env.max_steps,
        env.history_len,
        p.temperature,
        p.batch_size,
        record_steps=False,
    )
    start, records = time.perf_counter(), []
    for i in range(0, len(snapshots), p.chunk_size):
        records += label_chunk(
            snapshots[i : i + p.chunk_size],
            policy,
            OracleTeacher(),
            engine,
            p,
            params.seed,
            params.quadrants.L_threshold,
        )
    return records, time.perf_counter() - start, engine.episodes_run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--snapshots", type=int, default=48)
    args = parser.parse_args()
    params = load_params()
    snapshots = read_jsonl("data/snapshots.jsonl", Snapshot)[: args.snapshots]
    policy = HFPolicy.load(params.student.dir, batch_size=params.student.score_batch_size)
    separate, t_separate, n_separate = label_all(SeparateRuns, snapshots, policy, params)
    shared, t_shared, n_shared = label_all(CountingEngine, snapshots, policy, params)
    p = params.label
    print(
        f"{len(snapshots)} snapshots; rounds of {p.round_size} up to {p.max_rollouts} rollouts "
        f"per arm, horizon {p.horizon}; labels identical: {separate == shared}"
    )
    print(
        f"separate arms: {n_separate} episodes, {t_separate:.1f} s, "
        f"{len(snapshots) / t_separate * 60:.1f} snapshots/min"
    )
    print(
        f"shared:        {n_shared} episodes (+ one probe step per student-chosen first "
        f"step), {t_shared:.1f} s, {len(snapshots) / t_shared * 60:.1f} snapshots/min"
    )
    print(
        f"shared / separate speed = {t_separate / t_shared:.2f}x; "
        f"episodes run {n_shared / n_separate:.2f}"
    )


if __name__ == "__main__":
    main()
