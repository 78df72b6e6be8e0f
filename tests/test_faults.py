"""What a fault probe found, each now failing clearly: MLflow runs of killed stages left RUNNING,
and inputs that were accepted silently or crashed late (a labeled record without a needed field,
duplicate snapshot ids, an empty snapshots file) — each now one line naming the file and line, and
exit code 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from teachable.core.records import Episode, InputError, Snapshot, write_jsonl
from tests.project_copy import ROOT, copy_project, load_stage

# ---- MLflow: a killed stage's run does not stay RUNNING ----

HOLD = """
import sys, time
from teachable.core.tracking import stage_run
with stage_run(sys.argv[1], {"a": 1}) as mlflow:
    print(mlflow.active_run().info.run_id, flush=True)
    time.sleep(120)
"""


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    """One MLflow database and experiment for the module, created here (creating one takes
    seconds)."""
    from mlflow.tracking import MlflowClient

    from teachable.core.tracking import EXPERIMENT

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    MlflowClient(uri).create_experiment(EXPERIMENT)  # once, not by each holder below
    return uri


@pytest.fixture(scope="module")
def holders(tracking_uri, tmp_path_factory):
    """Two processes, started together, each holding a run of its stage open: {stage: (process, run
    id)}."""
    cwd = tmp_path_factory.mktemp("holders")
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": str(ROOT)}
    procs = {
        stage: subprocess.Popen(
            [sys.executable, "-c", HOLD, stage],
            cwd=cwd,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for stage in ("probe-term", "probe-kill")
    }
    out = {}
    for stage, proc in procs.items():
        run_id = proc.stdout.readline().strip()
        assert run_id, proc.communicate(timeout=60)[1][-3000:]
        out[stage] = proc, run_id
    yield out
    for proc, _ in out.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def client(tracking_uri, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    return MlflowClient(tracking_uri)


@pytest.mark.heavy
def test_sigterm_ends_the_run_killed_at_once(holders, client):
    proc, run_id = holders["probe-term"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert client.get_run(run_id).info.status == "KILLED"


@pytest.mark.heavy
def test_the_next_start_marks_the_runs_of_dead_processes_killed(holders, client):
    from teachable.core.tracking import process_tags, stage_run

    proc, dead = holders["probe-kill"]
    proc.kill()  # SIGKILL: nothing runs in the process, its run stays RUNNING
    proc.wait(timeout=60)
    assert client.get_run(dead).info.status == "RUNNING"
    experiment = client.get_run(dead).info.experiment_id
    dead_tags = {
        k: v for k, v in client.get_run(dead).data.tags.items() if k.startswith("process.")
    }
    other_stage = client.create_run(experiment, tags={"stage": "other", **dead_tags}).info.run_id
    # this process
    alive = client.create_run(
        experiment, tags={"stage": "probe-kill", **process_tags()}
    ).info.run_id
    elsewhere = client.create_run(
        experiment, tags={"stage": "probe-kill", **dead_tags, "process.host": "elsewhere"}
    )

    with stage_run("probe-kill", {"a": 1}) as mlflow:
        this = mlflow.active_run().info.run_id
    status = lambda run_id: client.get_run(run_id).info.status  # noqa: E731
    assert (
        status(dead) == "KILLED"
        and "process was gone" in client.get_run(dead).data.tags["ended_by"]
    )
    assert status(this) == "FINISHED"
    # not this stage's, or its process lives, or it is on another host: cannot be told dead
    assert status(other_stage) == status(alive) == status(elsewhere.info.run_id) == "RUNNING"


def test_a_reused_pid_is_told_from_the_process_that_held_the_run():
    from teachable.core.tracking import process_gone, process_tags

    tags = process_tags()
    assert not process_gone(tags)
    # this pid, but a process started at another time
    assert process_gone({**tags, "process.start": "1"})
    assert not process_gone({**tags, "process.host": "elsewhere", "process.pid": "999999999"})
    assert not process_gone({})  # a run from before the process tags: cannot be told


# ---- inputs: one line naming the file, line and field or id; exit code 2 ----


def labeled(i: int, **drop) -> dict:
    record = {
        "snapshot_id": f"s{i}",
        "seed": i,
        "step_idx": 1 + i,
        "U": 0.2 * i,
        "leverage": {
            "L_local": 0.1 * i,
            "L_upper": 0.5,
            "decision_ci": [0.1 * i - 0.05, 0.1 * i + 0.05],
        },
    }
    for key in drop:
        if "." in key:
            outer, inner = key.split(".")
            del record[outer][inner]
        else:
            del record[key]
    return record


def run_stage(name: str, capsys) -> str:
    """`stage.run(main)` as `python stages/<name>.py` does it: the stderr line of a stage that exits
    with 2."""
    from teachable import stage

    with pytest.raises(SystemExit) as exit_:
        stage.run(load_stage(name).main, str(ROOT / "params.yaml"))
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "lines, expected",
    [
        ([labeled(0), "", labeled(1, U=None)], ["data/labeled_snapshots.jsonl:3:", "no field 'U'"]),
        (
            [labeled(0), labeled(1, **{"leverage.decision_ci": None})],
            ["data/labeled_snapshots.jsonl:2:", "no field 'leverage.decision_ci'"],
        ),
        (
            [labeled(0), {**labeled(1), "U": None}],
            ["data/labeled_snapshots.jsonl:2:", "null for field 'U'"],
        ),
        (
            [labeled(0), labeled(1), labeled(0)],
            ["data/labeled_snapshots.jsonl:3:", "duplicate snapshot_id 's0'", "first on line 1"],
        ),
        # once put all snapshots in Q3/Q4, rc 0
        (
            [labeled(0), {**labeled(1), "U": float("nan")}, labeled(2)],
            ["data/labeled_snapshots.jsonl:2:", "field 'U' is NaN, not a finite number"],
        ),
    ],
)
def test_quadrants_names_a_bad_labeled_record(lines, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data/labeled_snapshots.jsonl").write_text(
        "".join((json.dumps(r) if r else "") + "\n" for r in lines)
    )
    err = run_stage("quadrants", capsys)
    assert all(part in err for part in expected), err
    assert not (tmp_path / "data/quadrant_snapshots.jsonl").exists()


def episode(i: int) -> Episode:
    return Episode(
        episode_id=f"ep{i:06d}",
        env="babyai",
        task_id=f"GoToLocal-{i}",
        seed=i,
        policy="student",
        success=False,
        reward=0.0,
        n_steps=0,
    )


def test_snapshots_names_duplicate_episode_ids_in_its_input(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_jsonl("data/rollouts/student.jsonl", [episode(0), episode(1), episode(0)])
    err = run_stage("snapshots", capsys)
    assert "data/rollouts/student.jsonl:3: duplicate episode_id 'ep000000' (first on line 1)" in err


def test_snapshots_never_writes_duplicate_snapshot_ids(tmp_path, monkeypatch, client):
    from teachable.core.params import Params

    monkeypatch.chdir(tmp_path)
    write_jsonl("data/rollouts/student.jsonl", [episode(0)])
    snap = Snapshot(
        snapshot_id="ep000000-s1",
        env="babyai",
        task_id="GoToLocal-0",
        seed=0,
        step_idx=1,
        source="student_failure",
        mission="",
        history=[],
        obs="",
        valid_actions=["go forward"],
        student_action="go forward",
        state={"level": "GoToLocal", "seed": 0, "actions": ["go forward"]},
        state_hash="h",
    )
    stage = load_stage("snapshots")
    twice = [snap, snap.model_copy(update={"snapshot_id": "ep000000-s2"}), snap]
    monkeypatch.setattr(stage, "failure_snapshots", lambda *a: twice)
    monkeypatch.setattr(stage, "verify_restorable", lambda *a: None)
    with pytest.raises(
        InputError,
        match=r"data/snapshots\.jsonl:3: duplicate snapshot_id 'ep000000-s1' "
        r"\(first on line 1\)",
    ):
        stage.main(Params.defaults(env={"levels": ["GoToLocal"]}, snapshots={"expert_tasks": 0}))
    assert not (tmp_path / "data/snapshots.jsonl").exists()


@pytest.mark.heavy
def test_label_on_an_empty_snapshots_file_exits_2_with_one_line(tmp_path):
    work = tmp_path / "project"
    run = copy_project(work, {})
    (work / "data").mkdir(exist_ok=True)
    (work / "data/snapshots.jsonl").write_text("")
    result = run(sys.executable, "stages/label.py")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: data/snapshots.jsonl holds no snapshots: nothing to label"
    )
    assert "Traceback" not in result.stderr


# ---- seeds: one formula, one place ----


def test_the_phase_0_sample_seed_has_one_definition():
    from teachable.core.tasks import rollout_sample_seed

    assert [rollout_sample_seed(0, i) for i in range(3)] == [0, 1, 2]
    assert rollout_sample_seed(2, 5) == 2 * 1_000_003 + 5
    assert "1_000_003" not in (ROOT / "stages/rollouts.py").read_text()


# ---- issue 33: one stage per resume log; disk, database and params faults in one line;
# damaged resume logs ----

LOCKER = """
import sys, time
from teachable import stage
from teachable.core.resume import ScratchLog

def main(params):
    log = ScratchLog("label", {"k": 1})
    print("holding", log.path, flush=True)
    time.sleep(float(sys.argv[1]))

stage.run(main, sys.argv[2])
"""


@pytest.mark.heavy
def test_a_stage_that_outlived_its_dvc_repro_is_never_run_beside(tmp_path):
    """SIGTERM to `dvc repro` alone orphans the running stage; the next `dvc repro` once ran beside
    it on the same resume log. The second process stops with one line naming the first's pid; once
    the first is gone (even by SIGKILL), the resume log is free again."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    start = lambda hold_s: subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(hold_s), str(ROOT / "params.yaml")],  # noqa: E731
        cwd=tmp_path,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = start(120)
    try:
        line = first.stdout.readline()
        assert line.startswith("holding"), first.communicate(timeout=60)[1][-3000:]
        second = start(0)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 2 and "holding" not in out, err[-3000:]
        assert (
            err.strip()
            .splitlines()[-1]
            .startswith(
                f"error: {line.split()[1]} is in use by process {first.pid} "
                "(a run of this stage that outlived its `dvc repro`?): "
                f"wait for it to end or stop it (kill {first.pid}), then rerun"
            )
        ), err[-3000:]
        assert "Traceback" not in err
    finally:
        first.kill()
        first.wait()
    again = start(0)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0 and out.startswith("holding"), err[-3000:]


@pytest.fixture
def quadrants_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_jsonl("data/labeled_snapshots.jsonl", [labeled(i) for i in range(4)])
    return load_stage("quadrants")


@pytest.mark.heavy
@pytest.mark.parametrize(
    "error, expected",
    [
        (
            PermissionError(13, "Permission denied", "reports/phase1/.quantiles.json.x.tmp"),
            "error: permission denied (reports/phase1/.quantiles.json.x.tmp): "
            "make reports/phase1/ writable for this user (chmod -R u+w reports/phase1) and rerun",
        ),
        (
            OSError(30, "Read-only file system", "reports/phase1/.quantiles.json.x.tmp"),
            "error: read-only file system (reports/phase1/.quantiles.json.x.tmp): "
            "run the stage from a writable checkout",
        ),
        (
            OSError(28, "No space left on device"),
            "error: no space left on the device: free space there (old .scratch/ folders, "
            "`dvc gc`) and rerun; finished work in .scratch/ is kept",
        ),
    ],
    ids=["read-only folder", "read-only file system", "full disk"],
)
def test_a_disk_that_cannot_be_written_is_one_line(
    error, expected, quadrants_input, monkeypatch, capsys
):
    def write_json(path, obj):
        raise error

    monkeypatch.setattr(quadrants_input, "write_json", write_json)
    from teachable import stage

    with pytest.raises(SystemExit) as exit_:
        stage.run(quadrants_input.main, str(ROOT / "params.yaml"))
    err = capsys.readouterr().err.strip().splitlines()  # MLflow's own INFO lines, then one line
    assert exit_.value.code == 2 and err[-1] == expected and "Traceback" not in "".join(err)


def test_a_corrupt_mlflow_database_is_one_line(quadrants_input, tmp_path, capsys):
    (tmp_path / "mlflow.db").write_bytes(os.urandom(4096))
    err = run_stage("quadrants", capsys)
    db = tmp_path / "mlflow.db"
    assert err == (
        f"error: the MLflow database {db} cannot be read (file is not a database): move it aside "
        f"(mv {db} {db}.bad) to start a new one, or set MLFLOW_TRACKING_URI to another, and rerun"
    )


@pytest.mark.heavy
def test_a_yaml_syntax_error_in_params_is_one_line_when_a_stage_runs_directly(tmp_path):
    work = tmp_path / "project"
    run = copy_project(work, {})
    params = (work / "params.yaml").read_text().splitlines()
    (work / "params.yaml").write_text(
        "\n".join(params[:3] + ["  bad: [unclosed", *params[3:]]) + "\n"
    )
    result = run(sys.executable, "stages/label.py")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: params.yaml is not valid YAML at line ") and last.endswith(
        "fix its syntax"
    ), last


@pytest.mark.heavy
def test_a_damaged_resume_log_says_what_to_delete_and_ends_the_killed_run(
    tmp_path, monkeypatch, capsys
):
    from mlflow.tracking import MlflowClient

    from teachable import stage
    from teachable.core.resume import ScratchLog
    from teachable.core.tracking import EXPERIMENT, process_tags

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    # a SIGKILLed run
    killed = client.create_run(
        client.create_experiment(EXPERIMENT),
        tags={"stage": "label", **process_tags(), "process.pid": dead.stdout.strip()},
    ).info.run_id

    log = ScratchLog("label", {"k": 1})
    log.path.write_text(
        '{"snapshot_id": "a"}\n{"snapshot_id": "b", "U": 0.\n{"snapshot_id": "c"}\n'
    )
    with pytest.raises(SystemExit) as exit_:
        stage.run(lambda params: ScratchLog("label", {"k": 1}).load(), str(ROOT / "params.yaml"))
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after MLflow's own INFO lines
    assert exit_.value.code == 2 and err.startswith(f"error: {log.path}:2: malformed JSON")
    assert err.endswith(
        f"this resume log of a killed run is damaged: delete it (rm {log.path}) to start the stage "
        "afresh (its finished work is redone)"
    )
    assert client.get_run(killed).info.status == "KILLED"  # not left RUNNING


# ---- issue 33: a dvc.lock cut in half but still valid YAML made `dvc repro` silently re-run
# the stages it lost ----


@pytest.mark.heavy
def test_a_dvc_lock_that_lost_stages_stops_make_pilot_with_one_line(tmp_path, capsys):
    import shutil

    import yaml

    from teachable.__main__ import main

    git = lambda *args: subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=tmp_path,  # noqa: E731
        check=True,
        capture_output=True,
    )
    for name in ("dvc.yaml", "dvc.lock"):
        shutil.copy2(ROOT / name, tmp_path / name)
    # not a git repository: nothing to compare with
    assert main(["check-lock", "--root", str(tmp_path)]) == 0
    git("init", "-q")
    git("add", "dvc.yaml")
    git("commit", "-qm", "a first run has no dvc.lock in git")
    assert main(["check-lock", "--root", str(tmp_path)]) == 0
    git("add", "dvc.lock")
    git("commit", "-qm", "the pilot's dvc.lock")
    lock = tmp_path / "dvc.lock"
    full = lock.read_text()
    assert main(["check-lock", "--root", str(tmp_path)]) == 0  # HEAD's
    # a stage run again: another lock, every stage still in it
    lock.write_text(full.replace("md5: ", "md5: 0", 1))
    assert main(["check-lock", "--root", str(tmp_path)]) == 0

    lines = full.splitlines(keepends=True)
    # cut in half, still valid YAML: DVC says nothing
    lock.write_text("".join(lines[: len(lines) // 2]))
    stages = list(yaml.safe_load(full)["stages"])
    kept = list(yaml.safe_load(lock.read_text())["stages"])
    lost = [s for s in stages if s not in kept]
    assert lost and any(s.startswith("train@") for s in lost)  # matrix cells too
    capsys.readouterr()
    assert main(["check-lock", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: dvc.lock lacks {len(lost)} stage(s) that the committed dvc.lock "
        f"records ({', '.join(lost)}): `dvc repro` would run them again; "
        "restore them with `git checkout dvc.lock` (or run `dvc repro` yourself to re-run them)"
    ]
    lock.unlink()
    assert main(["check-lock", "--root", str(tmp_path)]) == 2
    assert f"lacks {len(stages)} stage(s)" in capsys.readouterr().err

    # a stage removed from dvc.yaml is not lost
    gone = next(s for s in reversed(stages) if "@" not in s)
    without = yaml.safe_load(full)
    del without["stages"][gone]
    lock.write_text(yaml.safe_dump(without, sort_keys=False))
    assert (
        main(["check-lock", "--root", str(tmp_path)]) == 2
        and f"({gone})" in capsys.readouterr().err
    )
    dvc_yaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    del dvc_yaml["stages"][gone]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    assert main(["check-lock", "--root", str(tmp_path)]) == 0

    pilot = (ROOT / "Makefile").read_text().split("\npilot:")[1].split("\n\n")[0]
    assert pilot.index("-m teachable check-lock") < pilot.index("dvc repro")
