import pytest

from teachable.core.params import SnapshotParams
from teachable.envs import RestoreError
from teachable.rollout.engine import RolloutEngine, RolloutSpec
from teachable.rollout.snapshots import (
    failure_snapshots,
    qualifying_steps,
    retention_panel,
    verify_restorable,
)
from teachable.core.resume import ScratchLog
from tests.test_rollout import RecordingPolicy


@pytest.fixture(scope="module")
def episodes():
    engine = RolloutEngine(RecordingPolicy("go forward"), max_steps=8, history_len=2, temperature=0)
    failing = engine.run([RolloutSpec(f"f{i}", "GoToLocal", i) for i in range(4)])
    solved = RolloutEngine(None, max_steps=64).run(
        [RolloutSpec("x", "GoToObj", 1, control="expert")]
    )
    return failing + solved


def test_failure_snapshots_come_from_failed_episodes_and_restore(episodes):
    params = SnapshotParams.defaults(max_snapshots=10, min_step=1)
    snaps = failure_snapshots(episodes, params, history_len=2, seed=0)
    assert len(snaps) == 10
    assert all(s.source == "student_failure" and not s.task_id.startswith("GoToObj") for s in snaps)
    for snap in snaps:
        assert snap.step_idx >= 1 and len(snap.state.actions) == snap.step_idx
        assert [h["action"] for h in snap.history] == snap.state.actions[-2:]
        assert snap.student_action == "go forward"
        verify_restorable(snap, max_steps=8)
    assert failure_snapshots(episodes, params, 2, seed=0) == snaps  # deterministic


def test_a_corrupted_snapshot_fails_verification(episodes):
    snap = failure_snapshots(episodes, SnapshotParams.defaults(max_snapshots=1), 2, seed=0)[0]
    broken = snap.model_copy(update={"state_hash": "0" * 16})
    with pytest.raises(RestoreError):
        verify_restorable(broken, max_steps=8)


def test_last_k_steps_only(episodes):
    longest = max(episodes, key=lambda ep: len(ep.steps))
    assert len(longest.steps) == 8
    assert qualifying_steps(
        longest, SnapshotParams.defaults(steps="last_k", last_k=3, min_step=0)
    ) == [5, 6, 7]
    assert qualifying_steps(longest, SnapshotParams.defaults(steps="all", min_step=2)) == list(
        range(2, 8)
    )


def test_retention_panel_holds_solved_tasks(episodes):
    solved = [ep.task_id for ep in episodes if ep.success]
    assert "GoToObj-1" in solved and len(solved) < len(episodes)
    panel = retention_panel(episodes, limit=10)
    assert [t.task_id for t in panel] == solved and panel[-1].level == "GoToObj"
    assert len(retention_panel(episodes, limit=1)) == 1


def test_scratch_log_drops_a_torn_last_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = ScratchLog("stage", {"a": 1})
    log.append({"x": 1})
    with log.path.open("a") as fh:
        fh.write('{"x": 2, "trunc')  # killed mid-write
    assert log.load() == [{"x": 1}]
    assert ScratchLog("stage", {"a": 2}).path != log.path
