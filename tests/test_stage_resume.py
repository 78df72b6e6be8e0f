"""A killed `rollouts` stage, restarted, runs only the unfinished episodes and writes what an uninterrupted run
would have written."""

from pathlib import Path

from teachable.config import parse_params
from teachable.records import Episode, read_jsonl
from teachable.rollout import RolloutEngine
from teachable.stage import ScratchLog
from tests.project_copy import load_stage



def test_rollouts_resume_after_a_kill(tmp_path, monkeypatch, tiny_student_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = parse_params({"env": {"levels": ["GoToLocal"], "max_steps": 6},
                           "student": {"dir": str(tiny_student_dir)}, "rollouts": {"n_tasks": 6, "batch_size": 4}})
    stage = load_stage("rollouts")
    stage.main(params)
    uninterrupted = read_jsonl(stage.OUT, Episode)
    assert not any(Path(".scratch").glob("*.jsonl"))  # the scratch log is removed once the output is written

    key = stage.resume_key(params)
    scratch = ScratchLog("rollouts", key)
    for episode in uninterrupted[:4]:  # what a run killed after four episodes left behind
        scratch.append(episode)
    with scratch.path.open("a") as fh:
        fh.write('{"episode_id": "ep0000')  # torn by the kill

    ran = []
    original = RolloutEngine.run
    monkeypatch.setattr(RolloutEngine, "run", lambda self, specs, **kw: ran.extend(specs) or original(self, specs, **kw))
    Path(stage.OUT).unlink()
    stage.main(params)
    assert [s.episode_id for s in ran] == ["ep000004", "ep000005"]
    assert read_jsonl(stage.OUT, Episode) == uninterrupted


def test_label_resumes_after_a_kill(tmp_path, monkeypatch, tiny_student_dir):
    from teachable.records import write_jsonl
    from teachable.snapshots import failure_snapshots
    from teachable.config import SnapshotParams
    from tests.test_rollout import RecordingPolicy
    from teachable.rollout import RolloutSpec

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    episodes = RolloutEngine(RecordingPolicy("turn left"), max_steps=6).run(
        [RolloutSpec(f"e{i}", "GoToLocal", i) for i in range(3)])
    write_jsonl("data/snapshots.jsonl", failure_snapshots(episodes, SnapshotParams(max_snapshots=5), 2, seed=0))
    params = parse_params({"env": {"levels": ["GoToLocal"], "max_steps": 6}, "student": {"dir": str(tiny_student_dir)},
                           "label": {"round_size": 2, "max_rollouts": 2, "cpt_rollouts": 2, "chunk_size": 2}})
    stage = load_stage("label")
    stage.main(params)
    uninterrupted = read_jsonl(stage.OUT)
    assert len(uninterrupted) == 5

    key = stage.resume_key(params)
    key["snapshots_file"] = [r["snapshot_id"] for r in uninterrupted]
    scratch = ScratchLog("label", key)
    for record in uninterrupted[:2]:  # a run killed after its first chunk
        scratch.append(record)
    labeled = []
    original = stage.label_chunk
    monkeypatch.setattr(stage, "label_chunk", lambda snaps, *a: labeled.extend(s.snapshot_id for s in snaps)
                        or original(snaps, *a))
    Path(stage.OUT).unlink()
    stage.main(params)
    assert labeled == [r["snapshot_id"] for r in uninterrupted[2:]]
    assert read_jsonl(stage.OUT) == uninterrupted
