"""End to end on the shop: `dvc exp run -S env.name=shop ...` (the user's command) through the index, the shop
student, rollouts, snapshots, labels and quadrants, in a temporary copy of the project at a tiny scale."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from teachable.records import Episode, Snapshot, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
SHOP = ["env.name=shop", "env.levels=[all]", "env.max_steps=8", "shop.n_products=150", "shop.n_query_samples=2"]
TINY = {
    "student": {"n_train_tasks": 40, "max_train_steps": 6, "eval_every": 3, "n_eval_tasks": 4,
                "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64},
    "rollouts": {"n_tasks": 8, "batch_size": 8},
    "snapshots": {"max_snapshots": 8, "expert_tasks": 2, "expert_sample_rate": 0.5},
    "label": {"n_student_rollouts": 1, "n_force_rollouts": 1, "n_expert_rollouts": 1, "n_per_condition": 1},
    "quadrants": {"min_per_quadrant": 1},
}
STAGES = ["index", "student", "rollouts", "snapshots", "label", "quadrants"]


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(base[key], value) if isinstance(value, dict) else value
    return out


@pytest.fixture(scope="module")
def shop_project(tmp_path_factory):
    work = tmp_path_factory.mktemp("shop-clone") / "project"
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    for name in listed:
        if name != "dvc.lock" and (ROOT / name).is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, work / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (work / "params.yaml").write_text(yaml.safe_dump(merge(params, TINY)))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "DVC_NO_ANALYTICS": "1",
           "PYTHONPATH": str(work),  # the copy's code, not an installed one
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    run = lambda *cmd: subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"]):
        assert run(*cmd).returncode == 0
    result = run("dvc", "exp", "run", *[arg for kv in SHOP for arg in ("-S", kv)], *STAGES)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, run


@pytest.mark.slow
def test_shop_repro_runs_through_quadrants(shop_project):
    work, _ = shop_project
    meta = json.loads((work / "data/shop/meta.json").read_text())
    assert meta["built"] and meta["n_products"] == 150 and (work / "data/shop/index/fingerprint.json").exists()
    card = json.loads((work / "models/student/card.json").read_text())
    assert card["levels"] == ["all"] and (work / "models/student/model.safetensors").exists()
    episodes = read_jsonl(work / "data/rollouts/student.jsonl", Episode)
    assert len(episodes) == 8 and all(ep.env == "shop" for ep in episodes)
    first = episodes[0].steps[0]
    assert first.valid_actions == ["search[...]"] and all(a.startswith("search[") for a in first.action_probs)
    snaps = read_jsonl(work / "data/snapshots.jsonl", Snapshot)
    assert snaps and all(s.env == "shop" for s in snaps)
    labeled = read_jsonl(work / "data/quadrant_snapshots.jsonl")
    assert len(labeled) == len(snaps)
    assert all({"U", "leverage", "cpt", "teacher", "quadrant"} <= set(r) for r in labeled)
    for record in labeled:  # U is over the scored candidates; open ones include the teacher's query
        if record["valid_actions"] == ["search[...]"]:
            assert record["teacher"]["suggested_action"] in record["student_probs"]
        else:
            assert set(record["student_probs"]) == set(record["valid_actions"])


@pytest.mark.slow
def test_shop_repro_again_is_a_no_op_and_keeps_the_index(shop_project):
    work, run = shop_project
    stamp = (work / "data/shop/index/fingerprint.json").stat().st_mtime_ns
    result = run("dvc", "repro", *STAGES)
    assert result.returncode == 0 and "didn't change" in result.stdout
    assert (work / "data/shop/index/fingerprint.json").stat().st_mtime_ns == stamp
