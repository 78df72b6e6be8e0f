"""End to end on the retail domain: `dvc exp run -S env.name=retail ...` (the user's command)
through every stage to the report, in a temporary copy of the project at a tiny scale; tool-call
episodes, pass^k with 2 rollouts and the generate mode's parse failures recorded."""

import json

import pandas as pd
import pytest

from teachable.core.params import RetailParams
from teachable.core.records import Episode, Snapshot, read_jsonl
from teachable.envs.retail import configure_retail
from teachable.envs.toolcall import parse_call
from teachable.policy.candidates import fits_open, is_open
from teachable.policy.parsing import is_malformed
from teachable.rollout.snapshots import verify_restorable
from tests.project_copy import copy_project

pytestmark = [pytest.mark.slow, pytest.mark.domains]  # `make test-all` only

RETAIL = [
    "env.name=retail",
    "env.levels=[all]",
    "env.max_steps=10",
    "rollouts.action_mode=generate",
]
TINY = {
    "retail": {"n_users": 12, "n_products": 8},
    "student": {
        "n_train_tasks": 12,
        "max_train_steps": 4,
        "eval_every": 2,
        "n_eval_tasks": 3,
        "max_length": 1536,
        "group_by_length": True,
        "hidden_size": 32,
        "num_layers": 1,
        "num_heads": 2,
        "intermediate_size": 64,
    },
    "rollouts": {"n_tasks": 12, "batch_size": 8},
    # generate mode: an untrained student writes no parseable call, and unparsed steps are no
    # snapshots, so the snapshots come from expert paths
    "snapshots": {"max_snapshots": 20, "expert_tasks": 8, "expert_sample_rate": 0.5},
    "label": {"round_size": 2, "max_rollouts": 2, "cpt_rollouts": 2, "horizon": 6},
    "quadrants": {"min_per_quadrant": 1, "undetermined": "point"},
    "micro_train": {
        "n_per_quadrant": 1,
        "n_steps": 2,
        "n_cpt_rollouts": 2,
        "n_validation_rollouts": 2,
    },
    "train": {"num_train_epochs": 1, "batch_size": 8, "min_records": 2, "n_seeds": 1},
    "evaluate": {
        "n_tasks": 3,
        "n_rollouts": 2,
        "n_snapshots_per_quadrant": 1,
        "retention_max": 2,
        "batch_size": 16,
    },
    "predictor": {"n_folds": 2, "ks": [2, 5], "embedding_dim": 32},
    "select": {"budget": 2},
}


@pytest.fixture(scope="module")
def retail_project(tmp_path_factory):
    work = tmp_path_factory.mktemp("retail-clone") / "project"
    run = copy_project(work, TINY, {"PYTHONPATH": str(work)})
    result = run("dvc", "exp", "run", *[arg for kv in RETAIL for arg in ("-S", kv)])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work


def test_retail_repro_runs_every_stage_to_the_report(retail_project):
    work = retail_project
    card = json.loads((work / "models/student/card.json").read_text())
    assert card["levels"] == ["all"] and (work / "models/student/model.safetensors").exists()
    episodes = read_jsonl(work / "data/rollouts/student.jsonl", Episode)
    assert len(episodes) == 12 and all(ep.env == "retail" for ep in episodes)
    steps = [s for ep in episodes for s in ep.steps]
    assert all(parse_call(a) for s in steps for a in s.valid_actions)  # every action is a tool call
    phase0 = json.loads((work / "reports/phase0/metrics.json").read_text())
    assert phase0["action_mode"] == "generate" and phase0["n_replies"] == len(steps)
    assert phase0["n_parse_failures"] == sum(not s.parse_ok for s in steps)
    assert phase0["n_malformed"] == sum(not s.parse_ok and is_malformed(s.reply) for s in steps)
    failed = [
        (ep.episode_id, i, s.reply)
        for ep in episodes
        for i, s in enumerate(ep.steps)
        if not s.parse_ok
    ]
    kept = json.loads((work / "reports/phase0/parse_failures.json").read_text())
    assert (
        failed
        and [(e["episode_id"], e["step"], e["reply"]) for e in kept["examples"]] == failed[:20]
    )
    snaps = read_jsonl(work / "data/snapshots.jsonl", Snapshot)
    assert snaps and all(s.env == "retail" for s in snaps)
    # the copy's database, for restoring its snapshots here
    configure_retail(n_users=12, n_products=8)
    try:
        for snap in snaps[:5]:
            verify_restorable(snap, max_steps=10)
    finally:
        configure_retail(
            n_users=RetailParams.defaults().n_users, n_products=RetailParams.defaults().n_products
        )
    labeled = read_jsonl(work / "data/quadrant_snapshots.jsonl")
    # U's candidates: every listed call, plus messages that fill the open `respond` (the student's
    # sampled ones and the teacher's); the template itself is never one
    for r in labeled:
        listed = {a for a in r["valid_actions"] if not is_open(a)}
        assert listed <= set(r["student_probs"]) and len(listed) < len(r["valid_actions"])
        assert all(fits_open(a, r["valid_actions"]) for a in set(r["student_probs"]) - listed)
    assert labeled
    assert all(
        r["teacher"]["suggested_action"] in r["valid_actions"]
        or fits_open(r["teacher"]["suggested_action"], r["valid_actions"])
        for r in labeled
    )
    pass_k = pd.read_csv(work / "reports/phase3/pass_k.csv")
    assert set(pass_k.k) == {1, 2} and pass_k.value.between(0, 1).all()
    overall = pd.read_csv(work / "reports/phase3/overall_task_results.csv")
    assert (overall.action_mode == "generate").all() and overall.parse_failure_rate.between(
        0, 1
    ).all()
    page = (work / "reports/detail.html").read_text()
    assert "pass^" in page and "Parse failures" in page and "Tab P.2" in page
