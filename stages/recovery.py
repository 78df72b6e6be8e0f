"""Stage `recovery`: expert-control rollouts from every labeled snapshot; the successful ones
exported as multi-step training records for the extra `train_recovery` cell. Output
`data/recovery_trajectories.jsonl`."""

from __future__ import annotations

from teachable import stage
from teachable.core.params import Params
from teachable.core.records import read_jsonl, write_json, write_jsonl
from teachable.training.recovery import expert_recoveries, recovery_records
from teachable.rollout.engine import RolloutEngine
from teachable.core.tasks import training_snapshots
from teachable.core.tracking import stage_run

LABELED, OUT, METRICS = (
    "data/quadrant_snapshots.jsonl",
    "data/recovery_trajectories.jsonl",
    "reports/phase2/recovery.json",
)


def main(params: Params) -> None:
    env = params.env
    # recoveries train the model: no held-out states
    snapshots = training_snapshots(read_jsonl(LABELED))
    with stage_run("recovery", params.model_dump(mode="json", include={"env"})) as mlflow:
        engine = RolloutEngine(
            None, env.name, env.max_steps, env.history_len, batch_size=params.label.batch_size
        )
        episodes = expert_recoveries(snapshots, engine)
        records = [
            rec
            for snap, ep in zip(snapshots, episodes)
            for rec in recovery_records(snap, ep, env.history_len)
        ]
        write_jsonl(OUT, records)
        metrics = {
            "n_snapshots": len(snapshots),
            "n_recovered": sum(ep.success for ep in episodes),
            "n_records": len(records),
        }
        write_json(METRICS, metrics)
        mlflow.log_metrics(metrics)


if __name__ == "__main__":
    stage.run(main)
