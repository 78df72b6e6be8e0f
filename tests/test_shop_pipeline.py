"""End to end on the shop: `dvc exp run -S env.name=shop ...` (the user's command) through the
index, the shop student, rollouts, snapshots, labels and quadrants, in a temporary copy of the
project at a tiny scale."""

import json

import pytest

from teachable.core.records import Episode, Snapshot, read_jsonl
from tests.project_copy import copy_project

SHOP = [
    "env.name=shop",
    "env.levels=[all]",
    "env.max_steps=8",
    "shop.n_products=150",
    "shop.n_query_samples=2",
]
TINY = {
    "student": {
        "n_train_tasks": 40,
        "max_train_steps": 6,
        "eval_every": 3,
        "n_eval_tasks": 4,
        "hidden_size": 32,
        "num_layers": 1,
        "num_heads": 2,
        "intermediate_size": 64,
    },
    "rollouts": {"n_tasks": 8, "batch_size": 8},
    "snapshots": {"max_snapshots": 8, "expert_tasks": 2, "expert_sample_rate": 0.5},
    "label": {"round_size": 2, "max_rollouts": 2, "cpt_rollouts": 2},
    "quadrants": {"min_per_quadrant": 1, "undetermined": "point"},
}
STAGES = ["index", "student", "rollouts", "snapshots", "label", "quadrants"]
pytestmark = pytest.mark.domains  # `make test-all` only (each test is slow too)


@pytest.fixture(scope="module")
def shop_project(tmp_path_factory):
    work = tmp_path_factory.mktemp("shop-clone") / "project"
    # the copy's code, not an installed one
    run = copy_project(work, TINY, {"PYTHONPATH": str(work)})
    result = run("dvc", "exp", "run", *[arg for kv in SHOP for arg in ("-S", kv)], *STAGES)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, run


@pytest.mark.slow
def test_shop_repro_runs_through_quadrants(shop_project):
    work, _ = shop_project
    meta = json.loads((work / "data/shop/meta.json").read_text())
    assert (
        meta["built"]
        and meta["n_products"] == 150
        and (work / "data/shop/index/fingerprint.json").exists()
    )
    card = json.loads((work / "models/student/card.json").read_text())
    assert card["levels"] == ["all"] and (work / "models/student/model.safetensors").exists()
    episodes = read_jsonl(work / "data/rollouts/student.jsonl", Episode)
    assert len(episodes) == 8 and all(ep.env == "shop" for ep in episodes)
    first = episodes[0].steps[0]
    assert first.valid_actions == ["search[...]"] and all(
        a.startswith("search[") for a in first.action_probs
    )
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
