"""Stage `snapshots` (phase 0): failure snapshots from the student's failed episodes, states sampled
from expert trajectories (experiment B), and the retention panel. Every snapshot is restored by
replay and hash-checked.

Outputs `data/snapshots.jsonl`, `data/retention_panel.jsonl` and `reports/phase0/snapshots.json`.
"""

from __future__ import annotations

from collections import Counter

from teachable import stage
from teachable.core.params import Params
from teachable.core.records import Episode, read_jsonl, require_unique, write_json, write_jsonl
from teachable.rollout.engine import RolloutEngine, RolloutSpec
from teachable.rollout.snapshots import (
    expert_snapshots,
    failure_snapshots,
    retention_panel,
    verify_restorable,
)
from teachable.core.tasks import make_tasks
from teachable.core.tracking import stage_run

ROLLOUTS = "data/rollouts/student.jsonl"
SNAPSHOTS, RETENTION, METRICS = (
    "data/snapshots.jsonl",
    "data/retention_panel.jsonl",
    "reports/phase0/snapshots.json",
)


def expert_episodes(params: Params) -> list[Episode]:
    env = params.env
    tasks = make_tasks(env.levels, params.snapshots.expert_tasks, "expert")
    engine = RolloutEngine(None, env.name, env.max_steps, env.history_len)
    return engine.run(
        [
            RolloutSpec(f"expert{i:06d}", t.level, t.seed, control="expert")
            for i, t in enumerate(tasks)
        ]
    )


def main(params: Params) -> None:
    p = params.snapshots
    # snapshot ids derive from them
    episodes = require_unique(read_jsonl(ROLLOUTS, Episode), "episode_id", ROLLOUTS)
    with stage_run(
        "snapshots", params.model_dump(mode="json", include={"seed", "env", "snapshots"})
    ) as mlflow:
        snaps = failure_snapshots(episodes, p, params.env.history_len, params.seed)
        if p.expert_tasks and p.expert_sample_rate:
            snaps += expert_snapshots(
                expert_episodes(params), p.expert_sample_rate, params.env.history_len, params.seed
            )
        for snap in snaps:
            verify_restorable(snap, params.env.max_steps)
        panel = retention_panel(episodes, p.retention_max)
        # the lines they would get
        require_unique(snaps, "snapshot_id", SNAPSHOTS, lines=range(1, len(snaps) + 1))
        write_jsonl(SNAPSHOTS, snaps)
        write_jsonl(RETENTION, panel)
        sources = Counter(s.source for s in snaps)
        metrics = {
            "n_snapshots": len(snaps),
            "n_student_failure": sources["student_failure"],
            "n_expert": sources["expert"],
            "n_failed_episodes": sum(not ep.success for ep in episodes),
            "n_retention_tasks": len(panel),
        }
        write_json(METRICS, metrics)
        mlflow.log_metrics(metrics)


if __name__ == "__main__":
    stage.run(main)
