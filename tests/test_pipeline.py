"""End to end: `dvc repro` of the whole pipeline in a temporary copy of the project at a tiny
scale."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from teachable.core.records import Episode, Snapshot, read_jsonl
from teachable.rollout.snapshots import verify_restorable
from tests.project_copy import copy_project

pytestmark = pytest.mark.slow  # `make test-fast` leaves it out

TINY = {
    "env": {"levels": ["GoToObj", "GoToLocal"], "max_steps": 12},
    "student": {
        "n_train_tasks": 15,
        "max_train_steps": 6,
        "eval_every": 3,
        "n_eval_tasks": 4,
        "hidden_size": 32,
        "num_layers": 1,
        "num_heads": 2,
        "intermediate_size": 64,
    },
    "rollouts": {"n_tasks": 12, "batch_size": 8},
    "snapshots": {"max_snapshots": 20, "expert_tasks": 2, "expert_sample_rate": 0.5},
    "label": {"round_size": 2, "max_rollouts": 4, "cpt_rollouts": 2, "horizon": 8},
    "quadrants": {"min_per_quadrant": 2, "undetermined": "point"},  # 4 rollouts decide few sides
    "micro_train": {
        "n_per_quadrant": 1,
        "n_steps": 2,
        "n_cpt_rollouts": 2,
        "n_validation_rollouts": 2,
    },
    "train": {
        "num_train_epochs": 1,
        "max_steps": -1,
        "batch_size": 8,
        "min_records": 3,
        "n_seeds": 2,
    },
    "evaluate": {"n_tasks": 4, "n_snapshots_per_quadrant": 2, "retention_max": 3, "batch_size": 16},
    "predictor": {"n_folds": 2, "ks": [2, 5], "embedding_dim": 32},
    "select": {"budget": 3},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    work = tmp_path_factory.mktemp("clone") / "project"
    run = copy_project(work, TINY)
    result = run("dvc", "repro")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, run


def test_repro_writes_every_output(project):
    work, _ = project
    assert (work / "models/student/model.safetensors").exists()
    assert (work / "models/student/card.json").exists()
    episodes = read_jsonl(work / "data/rollouts/student.jsonl", Episode)
    assert len(episodes) == 12 and all(ep.steps for ep in episodes)
    snaps = read_jsonl(work / "data/snapshots.jsonl", Snapshot)
    assert snaps and {s.source for s in snaps} <= {"student_failure", "expert"}
    for snap in snaps[:5]:
        verify_restorable(snap, max_steps=12)
    assert (work / "dvc.lock").exists()
    labeled = read_jsonl(work / "data/quadrant_snapshots.jsonl")
    assert len(labeled) == len(snaps)
    assert all({"U", "leverage", "cpt", "teacher", "quadrant"} <= set(r) for r in labeled)
    for name in (
        "hist_U.png",
        "hist_L.png",
        "scatter_U_L.png",
        "quadrant_thresholds.json",
        "u_l.csv",
    ):
        assert (work / "reports/phase1" / name).stat().st_size > 0
    correlation = json.loads((work / "reports/phase1b/cpt_correlation.json").read_text())
    assert {"reliability", "per_quadrant", "gates"} <= set(correlation)
    assert correlation["gates"]["cpt_validity"]["status"] in (
        "pass",
        "fail",
        "inconclusive",
        "not_applicable",
    )
    summary = json.loads((work / "reports/phase2/training_summary.json").read_text())
    assert summary["n_runs"] == 16  # 12 cells, 3 baselines (the self control one), recovery
    trained = [run for run in summary["runs"] if run["trained"]]
    assert trained and all(
        (work / run["adapter_path"] / f"seed-{k}" / "adapter_model.safetensors").exists()
        for run in trained
        for k in range(2)
    )  # train.n_seeds: 2
    assert all(run["n_records"] == 0 for run in summary["runs"] if not run["trained"])
    phase4 = json.loads((work / "reports/phase4/training_result.json").read_text())
    assert phase4["n_snapshots"] > 0 and (work / "models/predictor/features.json").exists()
    overall = pd.read_csv(work / "reports/phase3/overall_task_results.csv")
    # the base student + 16 trained models
    assert len(overall) == 17 and (overall.n_tasks == 4).all()
    assert len(pd.read_csv(work / "reports/phase3/transfer_matrix.csv")) <= 16
    # the self control: compared with every trained model, chosen by no gate
    assert overall.set_index("model").kind["self"] == "control"
    assert overall[overall.kind.isin(["cell", "baseline"])].vs_self_delta.notna().all()
    selection = json.loads((work / "reports/phase5/selection_summary.json").read_text())
    assert set(selection["methods"]) == {"random", "entropy", "predictor", "oracle"}
    assert set(selection["gates"]) == {"selection_ordering", "selection_retention"}
    phase3 = json.loads((work / "reports/phase3/metrics.json").read_text())
    assert set(phase3["gates"]) == {
        "end_to_end_gain",
        "retention",
        "supervision_differentiation",
        "transfer_diagonal",
    }
    assert all(
        g["status"] in ("pass", "fail", "inconclusive", "not_applicable")
        for g in phase3["gates"].values()
    )
    assert phase3["gates"]["end_to_end_gain"]["n_candidates"] == 15  # not the self control
    assert (overall[overall.model != "base"].n_seeds == 2).all()
    gates = json.loads((work / "reports/gates.json").read_text())
    assert gates and (work / "reports/index.html").stat().st_size > 10_000


def test_no_model_trains_on_a_held_out_snapshot(project):
    work, _ = project
    records = read_jsonl(work / "data/quadrant_snapshots.jsonl")
    held_out = {r["snapshot_id"] for r in records if r["split"] == "eval"}
    assert held_out and held_out != {r["snapshot_id"] for r in records}
    trained_on = {}
    for metrics in [
        *(work / "models/phase2").glob("*/metrics.json"),
        *(work / "models/phase5").glob("*/seed-*/metrics.json"),
    ]:
        trained_on[f"{metrics.parent.parent.name}/{metrics.parent.name}"] = set(
            json.loads(metrics.read_text())["snapshot_ids"]
        )
    # 16 cells, 4 methods x 2 seeds
    assert len(trained_on) == 16 + 4 * 2 and any(trained_on.values())
    assert all(not ids & held_out for ids in trained_on.values())
    episodes = pd.read_csv(work / "reports/phase3/episodes.csv", keep_default_na=False)
    assert set(episodes[episodes.panel == "snapshot"].item) <= held_out


def test_metrics_are_visible_to_dvc(project):
    _, run = project
    shown = run("dvc", "metrics", "show", "--json")
    for metric in ("success_rate", "n_snapshots", "n_labeled", "Q1_highU_highL"):
        assert metric in shown.stdout


def test_second_repro_is_a_no_op(project):
    _, run = project
    result = run("dvc", "repro")
    assert result.returncode == 0 and "didn't change" in result.stdout


def test_each_stage_is_one_mlflow_run(project):
    work, _ = project
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["teachable-moments"])
    stages = runs["tags.stage"].value_counts().to_dict()
    assert stages == {
        "train": 33,
        "recovery": 1,
        "label": 1,
        "micro_train": 1,
        "quadrants": 1,
        "rollouts": 1,
        "snapshots": 1,
        "student": 1,
        "predictor": 1,
        "evaluate_models": 1,
        "select_snapshots": 10,
        "report": 1,
    }
    # the matrix: one parent run and 16 cells x 2 seeds nested; select_snapshots: a parent, 4
    # methods x 2 seeds, the evaluation
    cells = runs[(runs["tags.role"] == "cell") & (runs["tags.stage"] == "train")]
    assert len(cells) == 32 and cells["tags.mlflow.parentRunId"].nunique() == 1
    assert (runs["tags.git_rev"].str.len() == 40).all()
    import torch  # every run says which machine and library versions made it

    assert (runs["tags.version.torch"] == torch.__version__).all() and runs[
        "tags.machine.cpu"
    ].str.len().min() > 0


def _run_with_params(work: Path, tmp_path: Path, change, script: str, env: dict | None = None):
    """Run a stage script of the project with changed params, in a directory of its own (the
    fixture's project is left as it was); returns the result and what the stage left in that
    directory besides params.yaml."""
    params = yaml.safe_load((work / "params.yaml").read_text())
    change(params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, str(work / script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
    )
    return result, sorted(p.name for p in tmp_path.iterdir() if p.name != "params.yaml")


def test_an_unknown_param_stops_the_stage_naming_the_key(project, tmp_path):
    work, _ = project
    result, left = _run_with_params(
        work, tmp_path, lambda p: p["rollouts"].update(n_taks=3), "stages/rollouts.py"
    )
    assert result.returncode == 2 and "rollouts.n_taks: unknown key" in result.stderr
    assert left == []


def test_the_openai_teacher_without_a_key_fails_before_any_work(project, tmp_path):
    work, _ = project
    result, left = _run_with_params(
        work,
        tmp_path,
        lambda p: p["teacher"].update(name="openai"),
        "stages/label.py",
        env={k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"},
    )
    assert result.returncode == 2 and "OPENAI_API_KEY is not set" in result.stderr
    assert left == []  # nothing read, nothing written: no data, no scratch log, no MLflow store
