"""The planner (`python -m teachable plan`): counts that follow by hand from tiny params, overrides, errors, teacher
dollars, GPU figures labelled as estimates, and gates that flip to decidable when the evaluation's n grows. No
model is loaded."""

import json

import pytest
import yaml

from teachable.__main__ import main
from teachable.core.params import ParamsError
from teachable.report import plan as planner

TINY = {
    "env": {"max_steps": 5},
    "rollouts": {"n_tasks": 10},
    "snapshots": {"max_snapshots": 8, "expert_tasks": 0},
    "label": {"round_size": 2, "max_rollouts": 4, "cpt_rollouts": 2, "horizon": 3},
    "micro_train": {"n_per_quadrant": 1, "n_steps": 2, "n_cpt_rollouts": 2, "n_validation_rollouts": 2},
    "train": {"max_steps": 7, "n_seeds": 2, "quadrants": ["Q1", "Q2"], "formats": ["demo", "hint"],
              "baselines": ["random"]},
    "evaluate": {"n_tasks": 6, "n_snapshots_per_quadrant": 1, "n_rollouts": 2, "retention_max": 3,
                 "holdout_fraction": 0.5},
    "select": {"methods": ["random", "entropy"], "budget": 4},
}


@pytest.fixture
def params_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def stages(params) -> dict:
    return {r["stage"].split()[0]: r for r in planner.workload(params)}


def test_counts_follow_by_hand_from_tiny_params(params_file):
    rows = stages(planner.load(params_file))
    assert rows["rollouts"]["episodes"] == 10 and rows["rollouts"]["calls"] == 10 * 5  # n_tasks x max_steps
    # label: 8 snapshots; arms student 4 + force 4 + expert 1 + 4 CPT arms x 2 = 17 episodes a snapshot; calls: U
    # once + student 4 x horizon 3 + force 4 x 2 (its first step is forced) + CPT 4 x 2 x 3
    assert rows["label"]["episodes"] == 8 * 17
    assert rows["label"]["calls"] == 8 * (1 + 4 * 3 + 4 * 2 + 4 * 2 * 3)
    assert rows["label"]["teacher"] == 0  # the oracle: offline, no calls
    # micro_train: 4 quadrants x 1 snapshot, 2 LoRA steps each, 2 x 2 validation rollouts (base, trained) and
    # 2 x 2 re-measured CPT rollouts (patch, placebo), of horizon 3
    assert rows["micro_train"]["train_steps"] == 4 * 2 and rows["micro_train"]["calls"] == 4 * (2 + 2) * 2 * 3
    # train: (2 x 2 cells + random) x 2 seeds x max_steps 7
    assert rows["train"]["train_steps"] == (2 * 2 + 1) * 2 * 7 and rows["train"]["runs"] == 10
    assert rows["recovery"]["train_steps"] == 2 * 7
    # evaluate: base + (4 cells + random + recovery) x 2 seeds, each on 6 tasks + 4 quadrants x 1 + 3 retention,
    # 2 rollouts each, at most max_steps states an episode
    models, items = 1 + 6 * 2, 6 + 4 + 3
    assert rows["evaluate"]["episodes"] == models * items * 2
    assert rows["evaluate"]["calls"] == models * items * 2 * 5
    assert rows["select"]["episodes"] == 2 * 2 * items * 2 and rows["select"]["train_steps"] == 2 * 2 * 7
    assert rows["rollouts"]["prompt_tokens"] == 50 * planner.env_tokens("babyai")["prompt"]


def test_overrides_change_the_numbers_and_unknown_keys_are_named(params_file):
    base = stages(planner.load(params_file))
    more = stages(planner.load(params_file, ["rollouts.n_tasks=20", "train.max_steps=3", "env.max_steps=6"]))
    assert more["rollouts"]["calls"] == 20 * 6 != base["rollouts"]["calls"]
    assert more["train"]["train_steps"] == 5 * 2 * 3
    with pytest.raises(ParamsError, match=r"rollouts\.n_taks: unknown key"):
        planner.load(params_file, ["rollouts.n_taks=20"])
    with pytest.raises(ParamsError, match="expected key=value"):
        planner.load(params_file, ["rollouts.n_tasks"])


def test_cli_names_an_unknown_key_and_prints_json(params_file, capsys):
    assert main(["plan", "--params", str(params_file), "-S", "label.n_rounds=3"]) == 2
    assert "label.n_rounds: unknown key" in capsys.readouterr().err
    assert main(["plan", "--params", str(params_file), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["totals"]["episodes"] == sum(r["episodes"] for r in out["stages"])
    assert out["profile"]["measured"] and {r["basis"] for r in out["stages"]} == {planner.MEASURED}


def test_teacher_dollars_scale_with_calls(params_file):
    one = stages(planner.load(params_file, ["teacher.name=openai"]))["label"]
    two = stages(planner.load(params_file, ["teacher.name=openai", "snapshots.max_snapshots=16"]))["label"]
    assert one["teacher"] == 8 and two["teacher"] == 16
    assert two["usd"] == pytest.approx(2 * one["usd"]) and one["usd"] > 0
    pricier = stages(planner.load(params_file, ["teacher.name=openai", "teacher.usd_per_mtok_in=1.5"]))["label"]
    assert pricier["usd"] > one["usd"]


def test_gpu_figures_are_labelled_estimates(params_file):
    params = planner.load(params_file, ["student.base_model=models/Qwen3-8B"])
    out = planner.plan(params, "h100", "vllm")
    assert out["profile"]["student_params"] == 8.2e9 and not out["profile"]["measured"]
    assert all(r["basis"] == planner.ESTIMATE and r["hours"] is not None for r in out["stages"])
    text = planner.to_text(out)
    stage_lines = [line for line in text.splitlines() if line.strip().split(" ")[0] in
                   {r["stage"].split()[0] for r in out["stages"]} | {"total"}]
    assert len(stage_lines) == len(out["stages"]) + 1
    assert all("estimate, not measured" in line for line in stage_lines)
    faster = planner.plan(params, "h200", "vllm")["totals"]["hours"]
    assert 0 < faster <= out["totals"]["hours"]  # same compute, faster memory
    offline = planner.plan(planner.load(params_file), "h100", "hf")
    assert offline["totals"]["hours"] is None  # no GPU formula for the offline CPU student


def test_gates_flip_from_needs_n_to_decidable(params_file):
    small = {g["gate"]: g for g in planner.gates(planner.load(params_file))}
    gain = small["3 end-to-end gain"]
    assert gain["n"] == 3 and gain["verdict"].startswith("needs n = ")
    assert f"evaluate.n_tasks = {2 * gain['n_needed']:,}" in gain["verdict"]
    enough = planner.load(params_file, [f"evaluate.n_tasks={2 * gain['n_needed']}"])
    raised = {g["gate"]: g for g in planner.gates(enough)}
    assert raised["3 end-to-end gain"]["verdict"] == "decidable at min_effect"
    assert raised["3 retention"]["verdict"].startswith("needs n")  # untouched panels stay as they were
    # a larger min_effect needs fewer items
    easier = {g["gate"]: g for g in planner.gates(planner.load(params_file, ["gates.min_effect=0.2"]))}
    assert easier["3 end-to-end gain"]["n_needed"] < gain["n_needed"]


def test_seeds_full_preset_prints_the_seeds_budget(params_file):
    params = planner.load(params_file, preset="seeds-full")
    assert params.rollouts.n_tasks == 1000 and params.student.base_model == "models/Qwen3-8B"
    assert params.train.max_steps == 7  # the file's own keys the preset leaves alone stay
    text = planner.to_text(planner.plan(params, "h100", "vllm", preset="seeds-full"))
    assert "16-27 GPU-hours" in text and "~80,000 episodes" in text
    over = planner.load(params_file, ["rollouts.n_tasks=5"], preset="seeds-full")
    assert over.rollouts.n_tasks == 5  # -S applies after the preset
