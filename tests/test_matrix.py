import subprocess
import sys
from pathlib import Path

import pytest

from teachable.core.records import InputError
from teachable.training.matrix import baseline_records, cell_records, cell_size, training_seed
from tests.test_training import LABELED

ROOT = Path(__file__).resolve().parents[1]


def records():
    quadrants = (
        ["Q1_highU_highL"] * 3
        + ["Q2_highU_lowL"] * 2
        + ["Q3_lowU_lowL"] * 4
        + ["Q4_lowU_highL"] * 3
    )
    return [{**LABELED, "snapshot_id": f"s{i}", "quadrant": q} for i, q in enumerate(quadrants)]


@pytest.mark.heavy
def test_the_matrix_expands_to_exactly_15_training_runs_plus_recovery():
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "stage", "list", "--name-only"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    cells = [name for name in listed if name.startswith(("train@", "train_baseline@"))]
    assert len(cells) == 15 and "train@Q1-demo" in cells and "train_baseline@random" in cells
    assert "train_baseline@self" in cells
    assert "train_recovery" in listed


def test_cells_hold_their_quadrant_in_their_format():
    q1_hint = cell_records(records(), "Q1", "hint")
    assert len(q1_hint) == 3 and {r["format"] for r in q1_hint} == {"hint"}
    assert len(cell_records(records(), "Q3", "contrast")) == 4


def test_size_matched_cells_share_their_subsample_across_formats_and_differ_by_seed():
    recs = records()  # Q1 3, Q2 2, Q3 4, Q4 3
    size = cell_size(recs, ["Q1", "Q2", "Q3", "Q4"], "min")
    assert (
        size == 2
        and cell_size(recs, ["Q1", "Q3"], "min") == 3
        and cell_size(recs, ["Q1"], None) is None
    )
    ids = lambda rs: sorted(r["snapshot_id"] for r in rs)  # noqa: E731
    by_seed = [ids(cell_records(recs, "Q3", "demo", size=size, seed=k)) for k in range(8)]
    # seeds draw their own
    assert all(len(c) == 2 for c in by_seed) and len({tuple(c) for c in by_seed}) > 1
    # formats share the draw
    assert ids(cell_records(recs, "Q3", "hint", size=size, seed=3)) == by_seed[3]
    # a small quadrant keeps what it has
    assert len(cell_records(recs, "Q2", "demo", size=5, seed=0)) == 2
    assert len(baseline_records(recs, "random", seed=0, size=size)) == size
    assert len({training_seed(0, k) for k in range(16)}) == 16 and training_seed(
        0, 1
    ) != training_seed(1, 1)


def test_baselines_come_from_the_pool_of_all_cells():
    pool = baseline_records(records(), "all", seed=0)
    assert len(pool) == 12 * 3
    sample = baseline_records(records(), "random", seed=0)
    assert len(sample) == 3 and sample == baseline_records(records(), "random", seed=0)
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_records(records(), "best", seed=0)


def test_the_self_control_labels_a_cells_size_with_the_students_own_choice():
    """`self`: the student's most likely action in the teacher's place, demo format, a cell's
    size drawn by seed from every snapshot (not the pool of formats)."""
    recs = [
        {
            **r,
            # the student prefers another action than the teacher's ("go forward") everywhere
            "student_probs": {"turn left": 0.2, "turn right": 0.5 + i / 100, "go forward": 0.3},
        }
        for i, r in enumerate(records())
    ]
    control = baseline_records(recs, "self", seed=0, size=2)
    assert len(control) == 2 and {r["format"] for r in control} == {"demo"}
    assert {r["action"] for r in control} == {"turn right"}
    assert control == baseline_records(recs, "self", seed=0, size=2)
    draws = {
        tuple(r["snapshot_id"] for r in baseline_records(recs, "self", k, size=2)) for k in range(8)
    }
    assert len(draws) > 1
    # unmatched: a quadrant's mean share of the snapshots, as `random` takes of the pool
    assert len(baseline_records(recs, "self", seed=0)) == 3
    # the same prompt as a demo record of the snapshot, only the target differs
    demo = {
        r["snapshot_id"]: r for r in baseline_records(recs, "all", seed=0) if r["format"] == "demo"
    }
    assert all(r["messages"] == demo[r["snapshot_id"]]["messages"] for r in control)
    assert all(demo[r["snapshot_id"]]["action"] == "go forward" for r in control)
    with pytest.raises(InputError, match="SFT only"):
        baseline_records(recs, "self", seed=0, method="dpo")


def test_recovery_records_follow_the_expert_with_the_students_history():
    from teachable.envs import make_env
    from teachable.training.recovery import expert_recoveries, recovery_records
    from teachable.rollout.engine import RolloutEngine

    env = make_env("babyai", "GoToLocal", 32)
    env.reset(4)
    for action in ["turn left", "turn left"]:
        env.step(action)
    snapshot = {
        **LABELED,
        "snapshot_id": "r",
        "seed": 4,
        "state": env.state(),
        "state_hash": env.state_hash(),
        "history": env.history[-2:],
        "mission": env.mission,
    }
    (episode,) = expert_recoveries([snapshot], RolloutEngine(None, max_steps=32))
    assert episode.success and episode.policy == "expert"
    out = recovery_records(snapshot, episode, history_len=2)
    assert [r["action"] for r in out] == [s.action for s in episode.steps]
    assert "Your last actions: turn left, turn left." in out[0]["messages"][-1]["content"]
    assert recovery_records(snapshot, episode.model_copy(update={"success": False}), 2) == []


def test_dpo_trains_the_same_cells_on_preference_pairs():
    pairs = cell_records(records(), "Q1", "hint", method="dpo")
    sft = cell_records(records(), "Q1", "hint")
    assert len(pairs) == len(sft) == 3
    assert [p["messages"] for p in pairs] == [r["messages"] for r in sft]
    assert {(p["chosen"], p["rejected"]) for p in pairs} == {("go forward", "turn left")}
    assert len(baseline_records(records(), "random", seed=0, method="dpo")) == 3
