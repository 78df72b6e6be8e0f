"""Recovery trajectories (the seeds' export_lupper_recovery_trajectories): from each labeled
snapshot, the expert takes control (the L_upper intervention); every successful trajectory becomes
multi-step training records whose prompts are what the student would see along the way (its own
history before the snapshot included).
"""

from __future__ import annotations

from teachable.policy.prompts import build_messages
from teachable.core.records import Episode
from teachable.rollout.engine import RolloutEngine, RolloutSpec


def expert_recoveries(records: list[dict], engine: RolloutEngine) -> list[Episode]:
    specs = [
        RolloutSpec(
            r["snapshot_id"],
            r["state"]["level"],
            r["seed"],
            start_actions=tuple(r["state"]["actions"]),
            start_hash=r["state_hash"],
            control="expert",
        )
        for r in records
    ]
    return engine.run(specs)


def recovery_records(snapshot: dict, episode: Episode, history_len: int) -> list[dict]:
    """One {"messages", "action"} record per expert step of a successful recovery (none for a failed
    one)."""
    if not episode.success:
        return []
    history, out = list(snapshot["history"]), []
    for i, step in enumerate(episode.steps):
        shown = history[-history_len:] if history_len else []
        messages = build_messages(snapshot["mission"], step.obs, step.valid_actions, shown)
        out.append(
            {
                "snapshot_id": snapshot["snapshot_id"],
                "format": "recovery",
                "step": i,
                "messages": messages,
                "action": step.action,
            }
        )
        history.append({"obs": step.obs, "action": step.action})
    return out
