"""Evaluation from a snapshot gives the labeling's horizon: a snapshot late in its episode gets as
many steps in phase 3 as in labeling and phase 1B, so time left does not confound the per-quadrant
comparisons."""

from __future__ import annotations

from teachable.core.params import Params
from teachable.core.records import Episode
from teachable.evaluation.panels import EvalModel, episode_rows, evaluation_plan
from teachable.labeling.quadrants import QUADRANTS


def snapshot_record(step: int, quadrant: str) -> dict:
    return {
        "snapshot_id": f"ep1-s{step}",
        "seed": 7,
        "state_hash": "h",
        "quadrant": quadrant,
        "split": "eval",
        "state": {"level": "GoToLocal", "seed": 7, "actions": ["left"] * step},
    }


def test_snapshot_episodes_get_the_labeling_horizon_whatever_their_step():
    params = Params.defaults(
        env={"levels": ["GoToLocal"], "max_steps": 32},
        label={"horizon": 16},
        evaluate={"n_tasks": 2, "n_snapshots_per_quadrant": 2, "retention_max": 1},
    )
    records = [snapshot_record(step, q) for q in QUADRANTS for step in (3, 25)]
    plan = evaluation_plan(params, records, [])
    snapshot_specs = [s for s in plan["specs"] if s.episode_id.startswith("snapshot|")]
    assert len(snapshot_specs) == 8 and {s.horizon for s in snapshot_specs} == {16}
    assert {s.horizon for s in plan["specs"] if s.episode_id.startswith("task|")} == {None}
    assert plan["horizon"]["snapshot"] == 16


def test_a_snapshot_episode_that_used_its_horizon_ran_out_of_steps():
    episode = Episode(
        episode_id="snapshot|ep1-s25|0",
        env="babyai",
        task_id="GoToLocal-7",
        seed=7,
        policy="p",
        success=False,
        reward=0.0,
        n_steps=16,
        steps=[],
    )
    (row,) = episode_rows(
        EvalModel("base", "base"),
        [episode],
        {"ep1-s25": QUADRANTS[0]},
        {"GoToLocal": 32, "snapshot": 16},
    )
    assert row["hit_max_steps"] and row["eval_quadrant"] == "Q1"
