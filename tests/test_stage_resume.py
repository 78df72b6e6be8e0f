"""A killed `rollouts` stage, restarted, runs only the unfinished episodes and writes what an
uninterrupted run would have written."""

import os
import sys
from pathlib import Path

import pytest

from teachable.core.params import Params
from teachable.core.records import Episode, read_jsonl
from teachable.rollout.engine import RolloutEngine
from teachable.core.resume import ScratchLog
from tests.project_copy import load_stage


def test_rollouts_resume_after_a_kill(tmp_path, monkeypatch, tiny_student_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = Params.defaults(
        env={"levels": ["GoToLocal"], "max_steps": 6},
        student={"dir": str(tiny_student_dir)},
        rollouts={"n_tasks": 6, "batch_size": 4},
    )
    stage = load_stage("rollouts")
    stage.main(params)
    uninterrupted = read_jsonl(stage.OUT, Episode)
    # the scratch log is removed once the output is written
    assert not any(Path(".scratch").glob("*.jsonl"))

    key = stage.resume_key(params)
    scratch = ScratchLog("rollouts", key)
    for episode in uninterrupted[:4]:  # what a run killed after four episodes left behind
        scratch.append(episode)
    with scratch.path.open("a") as fh:
        fh.write('{"episode_id": "ep0000')  # torn by the kill

    ran = []
    original = RolloutEngine.run
    monkeypatch.setattr(
        RolloutEngine,
        "run",
        lambda self, specs, **kw: ran.extend(specs) or original(self, specs, **kw),
    )
    Path(stage.OUT).unlink()
    stage.main(params)
    assert [s.episode_id for s in ran] == ["ep000004", "ep000005"]
    assert read_jsonl(stage.OUT, Episode) == uninterrupted


def test_label_resumes_after_a_kill(tmp_path, monkeypatch, tiny_student_dir):
    from teachable.core.records import write_jsonl
    from teachable.rollout.snapshots import failure_snapshots
    from teachable.core.params import SnapshotParams
    from tests.test_rollout import RecordingPolicy
    from teachable.rollout.engine import RolloutSpec

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    episodes = RolloutEngine(RecordingPolicy("turn left"), max_steps=6).run(
        [RolloutSpec(f"e{i}", "GoToLocal", i) for i in range(3)]
    )
    snapshots = failure_snapshots(episodes, SnapshotParams.defaults(max_snapshots=5), 2, seed=0)
    write_jsonl("data/snapshots.jsonl", snapshots)
    params = Params.defaults(
        env={"levels": ["GoToLocal"], "max_steps": 6},
        student={"dir": str(tiny_student_dir)},
        label={"round_size": 2, "max_rollouts": 2, "cpt_rollouts": 2, "chunk_size": 2},
    )
    stage = load_stage("label")
    stage.main(params)
    uninterrupted = read_jsonl(stage.OUT)
    assert len(uninterrupted) == 5

    key = stage.resume_key(params)
    key["snapshots_file"] = [r["snapshot_id"] for r in uninterrupted]
    scratch = ScratchLog("label", key)
    for record in uninterrupted[:2]:  # a run killed after its first chunk
        scratch.append(record)
    from teachable.labeling import resumable

    labeled = []
    original = resumable.label_chunk
    monkeypatch.setattr(
        resumable,
        "label_chunk",
        lambda snaps, *a: labeled.extend(s.snapshot_id for s in snaps) or original(snaps, *a),
    )
    Path(stage.OUT).unlink()
    stage.main(params)
    assert labeled == [r["snapshot_id"] for r in uninterrupted[2:]]
    assert read_jsonl(stage.OUT) == uninterrupted


@pytest.mark.parametrize("stopping", ["interval", "posterior"])
@pytest.mark.heavy
def test_a_label_run_stopped_mid_chunk_resumes_to_the_uninterrupted_bytes(
    stopping, tmp_path, monkeypatch, pilot_student_dir, pilot_policy
):
    """Issue 33: a label run that stopped part way through a chunk (the disk full while it logged
    the chunk's records) labeled the chunk's rest as a chunk of its own on resume, and 4 of 8
    records differed from an uninterrupted run's (a batched forward pass gives each row floats that
    depend on the other rows). Here the pilot's student, a chunk of 8 snapshots, the disk full at
    the 4th line of the resume log (records, or the posterior rule's first-round states), then
    resumed: the uninterrupted run's bytes."""
    import errno

    from teachable.core.records import write_jsonl
    from tests.test_labeling import babyai_snapshots

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_jsonl("data/snapshots.jsonl", babyai_snapshots(pilot_policy, 8))
    params = Params.defaults(
        **{
            "env": {"levels": ["GoToLocal"], "max_steps": 8},
            "student": {"dir": str(pilot_student_dir)},
            "label": {
                "round_size": 2,
                "max_rollouts": 4,
                "cpt_rollouts": 2,
                "horizon": 4,
                "chunk_size": 8,
                "stopping": stopping,
            },
        }
    )
    stage = load_stage("label")
    stage.main(params)
    uninterrupted = Path(stage.OUT).read_bytes()
    assert uninterrupted.count(b"\n") == 8

    logged, append = [], ScratchLog.append

    def disk_full(log, record):
        if len(logged) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        logged.append(record["snapshot_id"])
        append(log, record)

    monkeypatch.setattr(ScratchLog, "append", disk_full)
    Path(stage.OUT).unlink()
    with pytest.raises(OSError, match="No space left"):
        stage.main(params)
    monkeypatch.setattr(ScratchLog, "append", append)
    stage.main(params)
    assert Path(stage.OUT).read_bytes() == uninterrupted


# ---- resume logs are keyed by the stage's deps (code, data, models), not by its params alone ----

import shutil  # noqa: E402


from teachable.core import resume as resume_lib  # noqa: E402
from teachable.core.tasks import rollout_sample_seed  # noqa: E402
from tests.project_copy import ROOT  # noqa: E402

pytestmark = pytest.mark.heavy  # `make test-fast` leaves it out


@pytest.fixture
def fresh_fingerprint():
    """The process computes its deps' fingerprint once: recompute it within the test and after
    it."""
    resume_lib.current_fingerprint.cache_clear()
    yield resume_lib.current_fingerprint.cache_clear
    resume_lib.current_fingerprint.cache_clear()


def mini_project(root: Path) -> Path:
    """What a stage started by DVC sees: dvc.yaml, the stage scripts and the package source at the
    project root."""
    shutil.copy2(ROOT / "dvc.yaml", root / "dvc.yaml")
    for folder in ("stages", "teachable"):
        shutil.copytree(
            ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    return root


def edit(path: Path, text: str = "\n# edited\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(text)


def test_the_deps_fingerprint_follows_code_data_and_models(tmp_path):
    project = mini_project(tmp_path)
    fingerprint = lambda name: resume_lib.dependency_fingerprint(  # noqa: E731
        project / "stages" / f"{name}.py"
    )
    edit(project / "models/student/model.safetensors", "weights")
    edit(project / "data/snapshots.jsonl", '{"snapshot_id": "a"}\n')
    label = fingerprint("label")
    assert label.startswith("dvc:") and fingerprint("label") == label

    os.utime(project / "teachable/rollout/engine.py", (1, 1))  # a new mtime, the same content
    # written by running it
    edit(project / "teachable/labeling/__pycache__/label.cpython-311.pyc", "bytecode")
    assert fingerprint("label") == label
    for dep in (
        "teachable/labeling/label.py",
        "teachable/rollout/engine.py",
        "stages/label.py",
        "data/snapshots.jsonl",
        "models/student/model.safetensors",
        "models/student/added.json",
    ):
        path = project / dep
        before = path.read_bytes() if path.exists() else None
        edit(path)
        assert fingerprint("label") != label, dep
        path.write_bytes(before) if before is not None else path.unlink()
        assert fingerprint("label") == label, dep  # by content: the same files again resume again

    evaluate = fingerprint("evaluate_models")
    edit(project / "teachable/evaluation/panels.py")  # not a dep of label
    assert fingerprint("label") == label and fingerprint("evaluate_models") != evaluate

    # the matrix cells, the baselines and recovery share stages/train.py: all deps
    train = fingerprint("train")
    edit(project / "data/recovery_trajectories.jsonl", "{}\n")
    assert fingerprint("train") != train

    assert resume_lib.dependency_fingerprint(project / "benchmarks/rollouts.py").startswith(
        "package:"
    )
    assert resume_lib.dependency_fingerprint(tmp_path / "elsewhere/script.py").startswith(
        "package:"
    )


@pytest.mark.parametrize(
    "change",
    [None, "teachable/rollout/engine.py", "models/student/config.json", "data/shop/meta.json"],
)
def test_a_killed_stage_resumes_only_under_the_same_deps(
    change, tmp_path, monkeypatch, tiny_student_dir, fresh_fingerprint
):
    """The probe: `label` killed part way, rerun after its code changed, kept 16 records from the
    old code. Here `rollouts` from a project root (dvc.yaml), killed after four episodes, rerun with
    its code, student model or data changed (all redone) or nothing changed (only the rest run)."""
    project = mini_project(tmp_path)
    shutil.copytree(tiny_student_dir, project / "models/student")
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "argv", [str(project / "stages/rollouts.py")])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = Params.defaults(
        env={"levels": ["GoToLocal"], "max_steps": 6},
        student={"dir": "models/student"},
        rollouts={"n_tasks": 6, "batch_size": 4},
    )
    stage = load_stage("rollouts")
    stage.main(params)
    uninterrupted = read_jsonl(stage.OUT, Episode)
    # keyed by the rollouts stage's deps in dvc.yaml
    assert resume_lib.current_fingerprint().startswith("dvc:")

    # what the killed run left, marked as old
    scratch = ScratchLog("rollouts", stage.resume_key(params))
    for episode in uninterrupted[:4]:
        scratch.append(episode.model_copy(update={"mission": "from the killed run"}))
    if change:
        edit(project / change, "\n")
        fresh_fingerprint()
    ran, original = [], RolloutEngine.run
    monkeypatch.setattr(
        RolloutEngine,
        "run",
        lambda self, specs, **kw: ran.extend(specs) or original(self, specs, **kw),
    )
    stage.main(params)
    episodes = read_jsonl(stage.OUT, Episode)
    if change:
        assert len(ran) == 6 and episodes == uninterrupted  # nothing kept from the old deps
        assert scratch.path.exists()  # the old log is left alone, never read
    else:
        assert [s.episode_id for s in ran] == ["ep000004", "ep000005"]
        assert [ep.mission for ep in episodes[:4]] == ["from the killed run"] * 4 and episodes[
            4:
        ] == uninterrupted[4:]
    assert [s.sample_seed for s in ran] == [
        rollout_sample_seed(params.seed, int(s.episode_id[2:])) for s in ran
    ]


def test_a_finished_cell_leaves_no_checkpoints_and_a_killed_cell_still_resumes(
    tmp_path, monkeypatch, tiny_student_dir
):
    """Issue 33: finished matrix cells left their checkpoints in .scratch (38 folders). A cell's
    checkpoints go once its adapters are written; until then they stay, so a cell killed in its
    second seed takes the first seed's adapter from its last checkpoint instead of training it
    again."""
    import json

    import pytest

    from teachable.core.records import write_jsonl
    from teachable.training.matrix import training_seed
    from tests.test_model_faults import matrix_records

    class Killed(Exception):
        pass

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setattr(sys, "argv", ["stages/train.py", "Q1-demo"])
    write_jsonl("data/quadrant_snapshots.jsonl", matrix_records())
    params = Params.defaults(
        student={"dir": str(tiny_student_dir)},
        train={"max_steps": 2, "batch_size": 1, "n_seeds": 2, "save_steps": 1},
    )
    stage = load_stage("train")
    train_lora = stage.train_lora

    def killed_in_seed_1(*args, seed, **kw):
        if seed == training_seed(params.seed, 1):
            raise Killed
        return train_lora(*args, seed=seed, **kw)

    with monkeypatch.context() as patch:
        patch.setattr(stage, "train_lora", killed_in_seed_1)
        with pytest.raises(Killed):
            stage.main(params)
    (kept,) = Path(".scratch").glob("checkpoints-Q1-demo-0-*")
    # seed 0 done: its checkpoint is kept for the rerun
    assert (kept / "checkpoint-2/trainer_state.json").is_file()
    stage.main(params)
    seed_0 = json.loads(Path("models/phase2/Q1-demo/seed-0/metrics.json").read_text())
    # taken, not trained again
    assert seed_0["resumed_from"].endswith("checkpoint-2") and seed_0["steps"] == 2
    assert json.loads(Path("models/phase2/Q1-demo/metrics.json").read_text())["n_seeds"] == 2
    # the finished cell's checkpoints (and their locks) are gone
    assert not list(Path(".scratch").iterdir())
