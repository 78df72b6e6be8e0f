"""Labeling speed: the whole chunk in one scoring call and one engine run a round (the old batching,
whose records depend on the chunk at the 6th decimal) vs each snapshot in its own
(`teachable.labeling.label`: records the same whatever the chunk). Same snapshots, same params, run
alternately; CPU seconds of this process and wall seconds.

    python benchmarks/label_batching.py [--snapshots 32] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import time
from unittest import mock

import torch

from teachable.core.params import load_params
from teachable.core.records import Snapshot, read_jsonl
from teachable.labeling import label
from teachable.policy.hf import HFPolicy
from teachable.policy.prompts import build_messages
from teachable.rollout.engine import RolloutEngine
from teachable.teacher import OracleTeacher


def chunk_round(entries, outcomes, engine, p, seed, first, last) -> None:
    """The old `_run_round`: every snapshot of the chunk in one run of the engine."""
    specs = [
        spec
        for snap, advice, patches, lev in entries
        for spec in label._specs(snap, advice, patches, p, seed, first, last, lev)
    ]
    suggested = {snap.snapshot_id: advice.suggested_action for snap, advice, _, _ in entries}
    for episode in engine.run_shared(specs):
        sid, arm, _ = episode.episode_id.split("|")
        outcomes[sid].setdefault(arm, []).append(episode.success)
        if arm == "student":
            outcomes[sid].setdefault("matched", []).append(episode.first_action == suggested[sid])


def chunk_scores(policy, snapshots, candidates):
    """The old U scoring: the chunk's snapshots in one call."""
    return policy.score(
        [build_messages(s.mission, s.obs, s.valid_actions, s.history) for s in snapshots],
        candidates,
    )


def rates(record: dict) -> list:
    """What a record's rollouts came to: counts and each arm's success rate (not U, the
    probabilities or p_match)."""
    return [
        record["rollouts"],
        *[
            {
                k: v
                for k, v in record.get(block, {}).items()
                if k.startswith(("p_", "n_")) and k != "p_match"
            }
            for block in ("leverage", "cpt")
        ],
    ]


def run(snapshots, policy, params, by_chunk: bool) -> tuple[list[dict], float, float]:
    env, p = params.env, params.label
    engine = RolloutEngine(
        policy,
        env.name,
        env.max_steps,
        env.history_len,
        p.temperature,
        p.batch_size,
        record_steps=False,
    )
    if by_chunk:
        mock.patch.object(label, "_run_round", chunk_round).start()
        mock.patch.object(label, "score_alone", chunk_scores).start()
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        records, _ = label.label_snapshots(
            snapshots, policy, OracleTeacher(), engine, p, params.seed, params.quadrants.L_threshold
        )
        return records, time.process_time() - cpu, time.perf_counter() - wall
    finally:
        mock.patch.stopall()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--snapshots", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    params = load_params()
    snapshots = read_jsonl("data/snapshots.jsonl", Snapshot)[: args.snapshots]
    policy = HFPolicy.load(params.student.dir, batch_size=params.student.score_batch_size)
    times, records = {True: [], False: []}, {}
    for _ in range(args.repeats):
        for by_chunk in (True, False):
            records[by_chunk], cpu, wall = run(snapshots, policy, params, by_chunk)
            times[by_chunk].append((cpu, wall))
            print(
                f"{'chunk   ' if by_chunk else 'snapshot'}: {cpu:6.1f} s CPU, {wall:6.1f} s wall",
                flush=True,
            )
    cpu = {k: sum(c for c, _ in v) for k, v in times.items()}
    wall = {k: sum(w for _, w in v) for k, v in times.items()}
    pairs = list(zip(records[True], records[False]))
    differ = sum(json.dumps(a) != json.dumps(b) for a, b in pairs)
    outcomes = sum(rates(a) != rates(b) for a, b in pairs)
    print(
        f"{len(snapshots)} snapshots, chunks of {params.label.chunk_size}, "
        f"{torch.get_num_threads()} torch thread(s), {args.repeats} repeats; "
        f"records that differ between the two: {differ} (in rollout outcomes: {outcomes})"
    )
    print(
        f"per-snapshot / per-chunk time: CPU {cpu[False] / cpu[True]:.3f}, "
        f"wall {wall[False] / wall[True]:.3f}"
    )


if __name__ == "__main__":
    main()
