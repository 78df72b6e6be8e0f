"""Phase 0 mining: failure snapshots from the student's failed episodes, states sampled from expert
trajectories (experiment B), and the retention panel (tasks the base student solves, kept for
phase 3).

A snapshot stores the (level, seed, action prefix) that rebuilds its state and the state hash the
rebuild must match; every snapshot is restored once here before it is written, so a later stage
never meets a broken one.
"""

from __future__ import annotations

import random

from teachable.core.params import SnapshotParams
from teachable.envs import restore_env
from teachable.core.records import Episode, RetentionTask, Snapshot


def _level(episode: Episode) -> str:
    return episode.task_id.rsplit("-", 1)[0]


def snapshot_at(episode: Episode, step_idx: int, source: str, history_len: int) -> Snapshot:
    steps = episode.steps
    here = steps[step_idx]
    past = steps[max(0, step_idx - history_len) : step_idx] if history_len else []
    return Snapshot(
        snapshot_id=f"{episode.episode_id}-s{step_idx}",
        env=episode.env,
        task_id=episode.task_id,
        seed=episode.seed,
        step_idx=step_idx,
        source=source,
        mission=episode.mission,
        history=[{"obs": s.obs, "action": s.action} for s in past],
        obs=here.obs,
        valid_actions=here.valid_actions,
        student_action=here.action if source == "student_failure" else None,
        state={
            "level": _level(episode),
            "seed": episode.seed,
            "actions": [s.action for s in steps[:step_idx]],
        },
        state_hash=here.state_hash,
    )


def qualifying_steps(episode: Episode, params: SnapshotParams) -> list[int]:
    """Steps of a failed episode that may become snapshots (all parsed steps, or the last k before
    the end)."""
    steps = [i for i, s in enumerate(episode.steps) if i >= params.min_step and s.parse_ok]
    if params.steps == "last_k":
        steps = steps[-params.last_k :]
    return steps


def failure_snapshots(
    episodes: list[Episode], params: SnapshotParams, history_len: int, seed: int
) -> list[Snapshot]:
    """Up to `max_snapshots` states from failed episodes, sampled uniformly over qualifying
    (episode, step)."""
    candidates = [
        (ep, i) for ep in episodes if not ep.success for i in qualifying_steps(ep, params)
    ]
    rng = random.Random(seed)
    chosen = rng.sample(candidates, min(params.max_snapshots, len(candidates)))
    chosen.sort(key=lambda pair: (pair[0].episode_id, pair[1]))
    return [snapshot_at(ep, i, "student_failure", history_len) for ep, i in chosen]


def expert_snapshots(
    episodes: list[Episode], rate: float, history_len: int, seed: int
) -> list[Snapshot]:
    """Experiment B: each state of an expert trajectory is kept with probability `rate`."""
    rng = random.Random(seed)
    return [
        snapshot_at(ep, i, "expert", history_len)
        for ep in episodes
        for i in range(len(ep.steps))
        if rng.random() < rate
    ]


def retention_panel(episodes: list[Episode], limit: int) -> list[RetentionTask]:
    solved = [ep for ep in episodes if ep.success][:limit]
    return [
        RetentionTask(
            task_id=ep.task_id, env=ep.env, level=_level(ep), seed=ep.seed, n_steps=ep.n_steps
        )
        for ep in solved
    ]


def verify_restorable(snapshot: Snapshot, max_steps: int) -> None:
    """Raise RestoreError unless replaying the snapshot's actions reproduces its stored hash."""
    restore_env(snapshot.env, snapshot.state.model_dump(), snapshot.state_hash, max_steps)
