"""A workspace copied or moved to another directory uses its own files: its adapters load its own
student, its MLflow runs write their artifacts under its own `mlruns/`, the original hidden while it
does. And parallel workers opening a fresh MLflow database all get the one experiment."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest
from safetensors.torch import load_file

from teachable.core.params import TrainParams
from tests.project_copy import ROOT
from tests.test_training import LABELED

# every test here trains an adapter or starts processes on a fresh MLflow database: make test, not
# test-fast
pytestmark = pytest.mark.heavy

ADAPTER = "models/phase2/Q1-demo/seed-0"


@pytest.fixture(scope="module")
def workspace(tiny_student_dir, tmp_path_factory):
    """A workspace with the tiny student at `models/student` and an adapter trained on it (one
    step), trained the way the stages train: from the workspace root, the base named as the params
    name it."""
    from teachable.training.lora import train_lora
    from teachable.training.supervision import supervision_record

    root = tmp_path_factory.mktemp("workspace") / "original"
    shutil.copytree(tiny_student_dir, root / "models/student")
    with contextlib.chdir(root):
        train_lora(
            "models/student",
            [supervision_record(LABELED, "demo")],
            TrainParams.defaults(max_steps=1, batch_size=1),
            ADAPTER,
            report=False,
            checkpoint_dir=root / ".scratch/ckpt",
        )
    return root


@pytest.fixture
def moved(workspace, tmp_path):
    """A copy of the workspace in another directory; the original is hidden (renamed) while the test
    runs."""
    copy = tmp_path / "copy"
    shutil.copytree(workspace, copy)
    hidden = workspace.with_name("hidden")
    workspace.rename(hidden)
    yield copy
    hidden.rename(workspace)


def base_weights(model) -> dict:
    """The base model's weights of a peft model, by the names they have in the student's own
    file."""
    base = model.get_base_model()
    weights = base.state_dict().items()
    return {
        name.replace(".base_layer", ""): tensor for name, tensor in weights if "lora_" not in name
    }


def assert_on_student(model, student_dir) -> None:
    assert any("lora_A" in name for name, _ in model.named_parameters())
    weights, own = base_weights(model), load_file(student_dir / "model.safetensors")
    shared = [name for name in own if name in weights]
    assert shared and all(weights[name].equal(own[name]) for name in shared)


def test_a_copied_workspace_loads_its_own_student_with_peft_from_its_root(moved, monkeypatch):
    from peft import AutoPeftModelForCausalLM

    monkeypatch.chdir(moved)
    with warnings.catch_warnings():
        # no unknown key in adapter_config
        warnings.filterwarnings("error", message=".*Unexpected keyword")
        model = AutoPeftModelForCausalLM.from_pretrained(ADAPTER)
    assert_on_student(model, moved / "models/student")
    config = json.loads((moved / ADAPTER / "adapter_config.json").read_text())
    # peft resolves it against the working directory
    assert config["base_model_name_or_path"] == "models/student"


def test_the_projects_loader_finds_the_copys_student_from_any_working_directory(
    moved, tmp_path, monkeypatch
):
    from teachable.training.lora import base_model_path, load_adapted_model

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert base_model_path(moved / ADAPTER) == str(moved / "models/student")
    assert_on_student(load_adapted_model(moved / ADAPTER), moved / "models/student")


def test_an_adapter_naming_the_absolute_path_of_a_gone_checkout_loads_the_workspaces_student(
    moved, monkeypatch
):
    """Adapters written before (the DVC outputs in `models/phase2`) name the base by the absolute
    path of the checkout that trained them; `base_model.json` kept the path relative to its root."""
    from teachable.training.lora import base_model_path, load_adapted_model

    gone = str(moved.with_name("original") / "models/student")
    config = json.loads((moved / ADAPTER / "adapter_config.json").read_text())
    (moved / ADAPTER / "adapter_config.json").write_text(
        json.dumps({**config, "base_model_name_or_path": gone})
    )
    (moved / ADAPTER / "base_model.json").write_text(
        json.dumps({"base_model_name_or_path": "models/student", "resolved": gone})
    )
    monkeypatch.chdir(moved)
    assert base_model_path(ADAPTER) == "models/student"
    assert_on_student(load_adapted_model(ADAPTER), moved / "models/student")


def test_a_base_model_outside_the_workspace_stays_absolute(tiny_student_dir, tmp_path, monkeypatch):
    from teachable.training.lora import anchor_base_model, base_model_path

    adapter = tmp_path / "workspace" / ADAPTER
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tiny_student_dir)})
    )
    monkeypatch.chdir(tmp_path / "workspace")
    anchor_base_model(adapter)
    assert json.loads((adapter / "base_model.json").read_text()) == {
        "base_model_name_or_path": str(tiny_student_dir)
    }
    assert base_model_path(adapter) == str(tiny_student_dir)


def log_one_artifact(tmp_path, name: str) -> str:
    """A stage run logging one file; its run id."""
    from teachable.core.tracking import stage_run

    (tmp_path / name).write_text(name)
    with stage_run("report", {"a": 1}) as mlflow:
        mlflow.log_artifact(str(tmp_path / name))
        return mlflow.active_run().info.run_id


def test_a_copied_workspace_writes_its_mlflow_artifacts_under_its_own_mlruns(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from teachable.core.tracking import EXPERIMENT

    original, copy = tmp_path / "original", tmp_path / "copy"
    original.mkdir()
    monkeypatch.chdir(original)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{original / 'mlflow.db'}")
    first = log_one_artifact(tmp_path, "first.txt")
    shutil.copytree(original, copy)
    shutil.rmtree(original)

    monkeypatch.chdir(copy)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{copy / 'mlflow.db'}")
    second = log_one_artifact(tmp_path, "second.txt")
    assert not original.exists()  # nothing written into (or recreating) the original's mlruns
    client = MlflowClient(f"sqlite:///{copy / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.artifact_location == str(copy / "mlruns" / experiment.experiment_id)
    for run_id, name in ((first, "first.txt"), (second, "second.txt")):  # the copied run's too
        artifacts = client.get_run(run_id).info.artifact_uri
        assert artifacts == str(copy / "mlruns" / experiment.experiment_id / run_id / "artifacts")
        assert (
            copy / "mlruns" / experiment.experiment_id / run_id / "artifacts" / name
        ).read_text() == name


WORKER = """
import os, sys, time
from pathlib import Path
import mlflow
from teachable.core.tracking import EXPERIMENT, _open_experiment
ready, n = Path(sys.argv[1]), int(sys.argv[2])
(ready / str(os.getpid())).touch()
# the workers start together, as `dvc queue start -j N` starts them
while len(list(ready.iterdir())) < n:
    time.sleep(0.01)
print(_open_experiment("worker").get_experiment_by_name(EXPERIMENT).experiment_id)
"""


def test_parallel_workers_on_a_fresh_database_all_open_the_one_experiment(tmp_path):
    from mlflow.tracking import MlflowClient

    from teachable.core.tracking import EXPERIMENT

    n, ready, uri = 4, tmp_path / "ready", f"sqlite:///{tmp_path / 'mlflow.db'}"
    ready.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(ready), str(n)],
            cwd=tmp_path,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(n)
    ]
    results = [worker.communicate(timeout=300) for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * n, [err[-600:] for _, err in results]
    experiments = [e for e in MlflowClient(uri).search_experiments() if e.name == EXPERIMENT]
    assert len(experiments) == 1
    assert {out.strip() for out, _ in results} == {experiments[0].experiment_id}
