"""Cells that learn: each adapter's shift of the student on its own training snapshots, in the
student's policy (train stage) and in success (evaluate's learning panel)."""

from __future__ import annotations

import pandas as pd
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from teachable.core.params import Params, TrainParams
from teachable.evaluation.learning_panel import learning_results, learning_summary
from teachable.evaluation.panels import EvalModel, learning_specs
from teachable.policy.hf import HFPolicy
from teachable.training.learning import adapter_shift, pooled_shift, probability_shift
from teachable.training.lora import train_lora
from teachable.training.supervision import supervision_record
from tests.test_training import LABELED


@pytest.mark.heavy
def test_an_adapter_trained_on_a_snapshot_raises_the_expert_action_there(
    tiny_student_dir, tmp_path
):
    params = TrainParams.defaults(
        max_steps=30,
        learning_rate=0.03,
        batch_size=1,
        target_modules=["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"],
    )
    train_lora(
        str(tiny_student_dir),
        [supervision_record(LABELED, "demo")],
        params,
        tmp_path / "adapter",
        report=False,
        checkpoint_dir=tmp_path / "ckpt",
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_student_dir).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    policy = HFPolicy(model, AutoTokenizer.from_pretrained(tiny_student_dir))
    shift = adapter_shift(policy, tmp_path / "adapter", [LABELED, {**LABELED, "snapshot_id": "s2"}])
    # a random tiny model: near-flat logits, so 30 steps make the action a few times more likely (as
    # in test_training)
    assert (
        shift["n"] == 2
        and shift["p_expert_trained"] > 2.5 * shift["p_expert_base"]
        and shift["ci"][0] > 0
    )
    # the base is left as it was
    assert all((model.state_dict()[k] == v).all() for k, v in before.items())


def test_probability_shift_and_its_pooling_over_seeds():
    shift = probability_shift([0.1, 0.2, 0.3, 0.2], [0.5, 0.6, 0.5, 0.6])
    assert shift["delta"] == pytest.approx(0.35) and 0 < shift["ci"][0] < 0.35 < shift["ci"][1]
    pooled = pooled_shift([{"delta": 0.3}, {"delta": 0.4}, {"delta": 0.5}, None])
    assert (
        pooled["delta"] == pytest.approx(0.4) and pooled["n_seeds"] == 3 and pooled["ci"][0] < 0.4
    )
    assert pooled_shift([{"delta": 0.3}])["ci"] == [None, None]


def _snapshot(i: int) -> dict:
    return {
        "snapshot_id": f"ep{i}-s1",
        "seed": i,
        "state_hash": "h",
        "state": {"level": "GoToLocal", "seed": i, "actions": ["left"]},
    }


def test_the_learning_panel_runs_each_adapter_on_its_own_snapshots_and_the_base_on_all():
    records = [_snapshot(i) for i in range(30)]
    models = [
        EvalModel("base", "base"),
        EvalModel("Q1-demo", "cell", "a0", "Q1", "demo", seed=0, trained_on=("ep1-s1", "ep2-s1")),
        EvalModel("Q1-demo", "cell", "a1", "Q1", "demo", seed=1, trained_on=("ep2-s1", "ep3-s1")),
        EvalModel("all", "baseline", "b0", trained_on=tuple(r["snapshot_id"] for r in records)),
    ]
    params = Params.defaults(
        evaluate={"n_learning_snapshots": 4, "n_learning_rollouts": 3}, label={"horizon": 16}
    )
    specs = learning_specs(models, records, params)
    items = {key: {s.episode_id.split("|")[1] for s in v} for key, v in specs.items()}
    assert items["Q1-demo/seed-0"] == {"ep1-s1", "ep2-s1"} and items["Q1-demo/seed-1"] == {
        "ep2-s1",
        "ep3-s1",
    }
    assert len(items["all/seed-0"]) == 4  # capped, a seeded sample
    assert (
        items["base/seed-0"]
        == items["Q1-demo/seed-0"] | items["Q1-demo/seed-1"] | items["all/seed-0"]
    )
    seeds = {s.episode_id: s.sample_seed for v in specs.values() for s in v}
    base = {s.episode_id: s.sample_seed for s in specs["base/seed-0"]}
    assert all(base[i] == seed for i, seed in seeds.items())  # adapter and base paired by seed
    assert all(s.horizon == 16 and len(s.start_actions) == 1 for s in specs["all/seed-0"])
    assert specs == learning_specs(models, records, params)


def test_the_learning_table_pairs_each_model_with_the_base_on_its_own_snapshots():
    rows = []
    for item, base_success in (("a", 0), ("b", 0), ("c", 1)):
        rows += [
            {
                "model": "base",
                "kind": "base",
                "train_quadrant": "",
                "format": "",
                "seed": 0,
                "panel": "learning",
                "item": item,
                "rollout": r,
                "success": base_success,
            }
            for r in range(2)
        ]
    for seed, items in ((0, ("a", "b")), (1, ("b", "c"))):
        rows += [
            {
                "model": "Q1-demo",
                "kind": "cell",
                "train_quadrant": "Q1",
                "format": "demo",
                "seed": seed,
                "panel": "learning",
                "item": item,
                "rollout": r,
                "success": 1,
            }
            for item in items
            for r in range(2)
        ]
    # other panels are not this table's
    rows.append({**rows[0], "panel": "task", "item": "GoToLocal-1"})
    table = learning_results(pd.DataFrame(rows))
    row = table.set_index("model").loc["Q1-demo"]
    assert (row.n_seeds, row.n_snapshots, row.n_rollouts) == (2, 4, 2)
    assert row.delta == pytest.approx(0.75) and row.success_base == pytest.approx(0.25)
    assert row.delta_ci_low < 0.75 < row.delta_ci_high
    summary = learning_summary(table)
    assert summary["n_models"] == 1 and summary["models"]["Q1-demo"]["n"] == 4


@pytest.mark.heavy
def test_an_adapter_that_changes_nothing_evaluates_exactly_as_the_base(tiny_student_dir, tmp_path):
    """Phase 3 compares every adapter with the base on shared sample seeds; a difference must come
    from the weights, never from the adapter's evaluation path (dropout left on, another tokenizer,
    padding). An adapter with lora_B zeroed computes the base's function, so at temperature 1 its 12
    sampled episodes are the base's, step for step; the same adapter before zeroing (30 steps at a
    high rate) plays other episodes, so the comparison can tell."""
    import torch
    from safetensors.torch import load_file, save_file

    from teachable.evaluation.panels import adapted, panel_specs
    from teachable.rollout.engine import RolloutEngine

    trained, zero = tmp_path / "trained", tmp_path / "zero"
    train_lora(
        str(tiny_student_dir),
        [supervision_record(LABELED, "demo")],
        TrainParams.defaults(max_steps=30, learning_rate=0.03, batch_size=1),
        trained,
        report=False,
        checkpoint_dir=tmp_path / "ckpt",
    )
    weights = load_file(trained / "adapter_model.safetensors")
    zero.mkdir()
    for f in trained.iterdir():
        if f.is_file() and f.name != "adapter_model.safetensors":
            (zero / f.name).write_bytes(f.read_bytes())
    save_file(
        {k: torch.zeros_like(v) if "lora_B" in k else v for k, v in weights.items()},
        str(zero / "adapter_model.safetensors"),
    )
    policy = HFPolicy(
        AutoModelForCausalLM.from_pretrained(tiny_student_dir).eval(),
        AutoTokenizer.from_pretrained(tiny_student_dir),
    )
    specs = panel_specs(["GoToLocal"], 12, [], [], 1, 0, None)

    def episodes(adapter):
        with adapted(policy, adapter) as p:
            runs = RolloutEngine(
                p, env_name="babyai", max_steps=8, history_len=2, temperature=1.0, batch_size=12
            ).run(specs)
        return [[step.action for step in ep.steps] for ep in runs]

    base = episodes(None)
    assert episodes(str(zero)) == base
    assert episodes(str(trained)) != base
    assert episodes(None) == base  # unloading the adapters left the base as it was
