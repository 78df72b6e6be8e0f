"""The planner (`python -m teachable plan`): counts that follow by hand from tiny params, overrides,
errors, teacher dollars and wall time, GPU figures labelled as estimates with their range, each
engine's FLOPs and hours by hand, calibration from a GPU run, the seeds preset against the seeds'
counts, and gates that flip to decidable when the evaluation's n grows. No model is loaded."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from teachable.__main__ import main
from teachable.core.params import Params, ParamsError
from teachable.plan import flops, planner

ROOT = Path(__file__).resolve().parent.parent
TINY = {
    "env": {"max_steps": 5},
    "rollouts": {"n_tasks": 10},
    "snapshots": {"max_snapshots": 8, "expert_tasks": 0},
    "label": {"round_size": 2, "max_rollouts": 4, "cpt_rollouts": 2, "horizon": 3},
    "micro_train": {
        "n_per_quadrant": 1,
        "n_steps": 2,
        "n_cpt_rollouts": 2,
        "n_validation_rollouts": 2,
    },
    "train": {
        "max_steps": 7,
        "n_seeds": 2,
        "quadrants": ["Q1", "Q2"],
        "formats": ["demo", "hint"],
        "baselines": ["random"],
    },
    "evaluate": {
        "n_tasks": 6,
        "n_snapshots_per_quadrant": 1,
        "n_rollouts": 2,
        "retention_max": 3,
        "holdout_fraction": 0.5,
    },
    "select": {"methods": ["random", "entropy"], "budget": 4},
}


@pytest.fixture
def params_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(Params.defaults(**TINY).model_dump(mode="json")))
    return path


def stages(params) -> dict:
    return {r["stage"].split()[0]: r for r in planner.workload(params)}


def test_counts_follow_by_hand_from_tiny_params(params_file):
    rows = stages(planner.load(params_file))
    # n_tasks x max_steps
    assert rows["rollouts"]["episodes"] == 10 and rows["rollouts"]["calls"] == 10 * 5
    # label: 8 snapshots; arms student 4 + force 4 + expert 1 + 4 CPT arms x 2 = 17 episodes a
    # snapshot; calls: U once + student 4 x horizon 3 + force 4 x 2 (its first step is forced) + CPT
    # 4 x 2 x 3
    assert rows["label"]["episodes"] == 8 * 17
    assert rows["label"]["calls"] == 8 * (1 + 4 * 3 + 4 * 2 + 4 * 2 * 3)
    assert rows["label"]["teacher"] == 0  # the oracle: offline, no calls
    # micro_train: 4 quadrants x 1 snapshot, 2 LoRA steps each, 2 x 2 validation rollouts (base,
    # trained) and 2 x 2 re-measured CPT rollouts (patch, placebo), of horizon 3
    assert (
        rows["micro_train"]["train_steps"] == 4 * 2
        and rows["micro_train"]["calls"] == 4 * (2 + 2) * 2 * 3
    )
    # train: (2 x 2 cells + random) x 2 seeds x max_steps 7
    assert rows["train"]["train_steps"] == (2 * 2 + 1) * 2 * 7 and rows["train"]["runs"] == 10
    assert rows["recovery"]["train_steps"] == 2 * 7
    # evaluate: base + (4 cells + random + recovery) x 2 seeds, each on 6 tasks + 4 quadrants x 1 +
    # 3 retention, 2 rollouts each, at most max_steps states an episode
    models, items = 1 + 6 * 2, 6 + 4 + 3
    assert rows["evaluate_models"]["episodes"] == models * items * 2
    assert rows["evaluate_models"]["calls"] == models * items * 2 * 5
    assert rows["select_snapshots"]["episodes"] == 2 * 2 * items * 2
    assert rows["select_snapshots"]["train_steps"] == 2 * 2 * 7
    assert rows["rollouts"]["prompt_tokens"] == 50 * planner.env_tokens("babyai")["prompt"]


def test_overrides_change_the_numbers_and_unknown_keys_are_named(params_file):
    base = stages(planner.load(params_file))
    more = stages(
        planner.load(params_file, ["rollouts.n_tasks=20", "train.max_steps=3", "env.max_steps=6"])
    )
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
    two = stages(planner.load(params_file, ["teacher.name=openai", "snapshots.max_snapshots=16"]))[
        "label"
    ]
    assert one["teacher"] == 8 and two["teacher"] == 16
    assert two["usd"] == pytest.approx(2 * one["usd"]) and one["usd"] > 0
    pricier = stages(
        planner.load(params_file, ["teacher.name=openai", "teacher.usd_per_mtok_in=1.5"])
    )["label"]
    assert pricier["usd"] > one["usd"]


def test_gpu_figures_are_labelled_estimates(params_file):
    params = planner.load(params_file, ["student.base_model=models/Qwen3-8B"])
    out = planner.plan(params, "h100", "vllm")
    prof = out["profile"]
    # one parameter count: Qwen3-8B's 8.19e9 in all, N = 6.95e9 in the decoder layers
    # (benchmarks/gpu.py's too)
    assert prof["student_params"] == 8_190_427_136 and prof["student_layer_params"] == 6_945_767_424
    assert not prof["measured"] and not any(f["measured"] for f in prof["figures"].values())
    assert all(r["basis"] == planner.ESTIMATE and r["hours"] is not None for r in out["stages"])
    # the assumed figures' ranges put the value between the low and high hours
    for r in out["stages"]:
        assert (
            r["hours_range"][0] <= r["hours"] + 1e-12 and r["hours"] <= r["hours_range"][1] + 1e-12
        )
    low, high = out["totals"]["hours_range"]
    assert low < out["totals"]["hours"] < high
    text = planner.to_text(out)
    stage_lines = [
        line
        for line in text.splitlines()
        if line.strip().split(" ")[0] in {r["stage"].split()[0] for r in out["stages"]} | {"total"}
    ]
    assert len(stage_lines) == len(out["stages"]) + 1
    assert all("estimate, not measured" in line for line in stage_lines)
    assert "Figures measured: none" in text and "vllm prefill_mfu 0.4 (range 0.2-0.5)" in text
    faster = planner.plan(params, "h200", "vllm")["totals"]["hours"]
    assert 0 < faster <= out["totals"]["hours"]  # same compute, faster memory
    offline = planner.plan(planner.load(params_file), "h100", "hf")
    assert offline["totals"]["hours"] is None  # no GPU formula for the offline CPU student


def test_engines_compute_what_their_caches_allow_by_hand():
    """A state of P = 10 prompt tokens and n = 3 candidates of c = 2 tokens, on a shape with N =
    1000, d V = 800 and 4 L H h = 64: hf runs the prompt once and the candidates' tokens after the
    first; SGLang recomputes from the prompt's last token (logprob_start_len); vLLM prefills
    prompt + candidate for every candidate."""
    shape = flops.Shape(layers=2, heads=2, head_dim=4, hidden=8, vocab=100, n_layer_params=1000)
    # hf: 10 + 3 x 1 tokens, logits at 1 + 3, keys 55 (causal prompt) + 3 x 11
    assert flops.scoring_work("hf", 10, 3, 2) == {"tokens": 13, "logits": 4, "keys": 88}
    assert flops.scoring_flops(shape, 10, 3, 2, "hf") == 2000 * 13 + 1600 * 4 + 64 * 88 == 38_032
    # sglang: the prompt alone (10), then each candidate from position 9: 3 tokens, keys 10 + 11 +
    # 12
    assert flops.scoring_work("sglang", 10, 3, 2) == {"tokens": 19, "logits": 10, "keys": 154}
    assert (
        flops.scoring_flops(shape, 10, 3, 2, "sglang") == 2000 * 19 + 1600 * 10 + 64 * 154 == 63_856
    )
    # vllm: 3 x 12 tokens, every position's logits, keys 3 x 78
    assert flops.scoring_work("vllm", 10, 3, 2) == {"tokens": 36, "logits": 36, "keys": 234}
    assert (
        flops.scoring_flops(shape, 10, 3, 2, "vllm") == 2000 * 36 + 1600 * 36 + 64 * 234 == 144_576
    )
    with pytest.raises(ValueError, match="unknown engine"):
        flops.scoring_work("tgi", 10, 3, 2)
    # Qwen3-8B on a shop state (240 prompt tokens, 10 candidates of 5): vLLM computes ~8.7x SGLang's
    # FLOPs
    qwen = flops.Shape.from_config(flops.QWEN3_8B)
    ratio = flops.scoring_flops(qwen, 240, 10, 5, "vllm") / flops.scoring_flops(
        qwen, 240, 10, 5, "sglang"
    )
    assert 8.5 < ratio < 9


@pytest.fixture
def hand_setup(tmp_path, params_file):
    """A student of N = 1280 (config.json: 2 layers of hidden 8, 2 heads of 4, MLP 16,
    vocabulary 100), BabyAI states of 10 prompt tokens and 3 candidates of 2, and a GPU of 1,000
    FLOP/s at MFU 0.5 on every engine, with no overheads: hours that follow by hand."""
    model = tmp_path / "tiny-model"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps(
            {
                "hidden_size": 8,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "head_dim": 4,
                "intermediate_size": 16,
                "vocab_size": 100,
                "tie_word_embeddings": False,
            }
        )
    )
    data = json.loads(planner.THROUGHPUT.read_text())
    data["env_tokens"]["babyai"].update(prompt=10, candidates=3, candidate_tokens=2)
    prof = data["profiles"]["h100"]
    prof.update(peak_tflops=1e-9, calibrated=None)
    for key in ("stage_start_s", "lora_run_overhead_s", "env_s_per_state"):
        prof[key] = {"value": 0, "measured": False, "range": [0, 0]}
    for engine in flops.ENGINES:
        data["backends"][engine]["prefill_mfu"] = {
            "value": 0.5,
            "measured": False,
            "range": [0.25, 1.0],
        }
    path = tmp_path / "throughput.json"
    path.write_text(json.dumps(data))
    return planner.load(params_file, [f"student.base_model={model}"]), path


@pytest.mark.parametrize(
    "engine, per_state",
    [
        ("hf", 2560 * 13 + 1600 * 4 + 64 * 88),
        ("sglang", 2560 * 19 + 1600 * 10 + 64 * 154),
        ("vllm", 2560 * 36 + 1600 * 36 + 64 * 234),
    ],
)
def test_label_hours_by_hand_for_each_engine(hand_setup, engine, per_state):
    params, path = hand_setup
    out = planner.plan(params, "h100", engine, path=path)
    assert out["profile"]["student_layer_params"] == 1280  # 2 x (4 x 8 x 8 + 3 x 8 x 16)
    label = {r["stage"]: r for r in out["stages"]}["label"]
    # 8 snapshots x 45 states (test_counts_follow_by_hand_from_tiny_params)
    assert label["calls"] == 360
    # the pilot's share of the upper bound (0.32) x 360 states x FLOPs a state / 500 FLOP/s
    assert label["flops"] == pytest.approx(0.32 * 360 * per_state)
    assert label["hours"] == pytest.approx(0.32 * 360 * per_state / 500 / 3600)
    # MFU 1.0 and 0.25
    assert label["hours_range"] == pytest.approx([label["hours"] / 2, label["hours"] * 2])
    assert label["computed_tokens"] == int(
        0.32 * 360 * {"hf": 13, "sglang": 19, "vllm": 36}[engine]
    )


def test_lora_hours_by_hand(hand_setup):
    """A LoRA record of S = 12 tokens (completion 2), r 8 on q, k, v, o (params.yaml's default): M =
    2 layers x 4 x 8 x (8 + 8) = 1024; per record 4 N S + 4 d V c + 3 x 4 L H h S (S + 1) / 2 + 6 M
    S at train_mfu 0.3."""
    params, path = hand_setup
    data = json.loads(path.read_text())
    data["profiles"]["h100"]["train_mfu"] = {
        "value": 0.25,
        "measured": False,
        "range": [0.25, 0.25],
    }
    path.write_text(json.dumps(data))
    out = planner.plan(params, "h100", "hf", path=path)
    train = {r["stage"].split()[0]: r for r in out["stages"]}["train"]
    per_record = 4 * 1280 * 12 + 4 * 800 * 2 + 3 * 64 * 78 + 6 * 1024 * 12
    assert train["train_records"] == (2 * 2 + 1) * 2 * 7 * 8  # steps x batch_size 8
    assert train["flops"] == pytest.approx(train["train_records"] * per_record)
    assert train["hours"] == pytest.approx(train["train_records"] * per_record / 250 / 3600)


def test_teacher_wall_time_is_apart_and_scales_with_concurrency(params_file):
    params = planner.load(
        params_file, ["teacher.name=openai", "student.base_model=models/Qwen3-8B"]
    )
    one, four = (planner.plan(params, "h100", "sglang", teacher_concurrency=k) for k in (1, 4))
    assert one["totals"]["teacher"] == 8
    # the assumed 1.5 s a call, one at a time
    assert one["totals"]["teacher_h"] == pytest.approx(8 * 1.5 / 3600)
    assert four["totals"]["teacher_h"] == pytest.approx(one["totals"]["teacher_h"] / 4)
    assert four["totals"]["hours"] == pytest.approx(one["totals"]["hours"])  # not in the GPU-hours
    assert one["totals"]["wall_h"] == pytest.approx(
        one["totals"]["hours"] + one["totals"]["teacher_h"]
    )
    assert one["totals"]["teacher_h_range"] == pytest.approx([8 * 0.8 / 3600, 8 * 4.0 / 3600])
    assert "at 4 call(s) in flight" in planner.to_text(four)


def gpu_run(device="NVIDIA H100 80GB HBM3", shape="Qwen3-8B") -> dict:
    """benchmarks/gpu.py's --out JSON, the fields calibration reads (tests/test_gpu_benchmark.py
    checks a real one)."""
    return {
        "device": device,
        "peak_tflops": 989.0,
        "model": {"shape": shape},
        "workload": {"env": "babyai", "prompt": 100},
        "scoring_check": {"finite": True, "max_abs_diff": 0.01},
        "scoring": [
            {"batch": 32, "tflops_per_s": 247.25, "mfu": 0.25},
            {"batch": 128, "tflops_per_s": 395.6, "mfu": 0.4},
        ],
        "lora": [{"batch": 8, "seq_len": 103, "tflops_per_s": 346.15, "mfu": 0.35}],
        "skipped": [],
    }


def test_calibrate_folds_a_gpu_run_into_the_profile(tmp_path, params_file, capsys):
    path = tmp_path / "throughput.json"
    shutil.copy(planner.THROUGHPUT, path)
    run = tmp_path / "gpu.json"
    run.write_text(json.dumps(gpu_run()))
    params = planner.load(
        params_file, ["student.base_model=models/Qwen3-8B", "label.batch_size=64"]
    )
    before = planner.plan(params, "h100", "hf", path=path)
    done = planner.calibrate(run, path)
    assert done["profile"] == "h100" and done["hf_prefill_mfu_by_batch"] == {"32": 0.25, "128": 0.4}
    assert done["train_mfu_by_batch"] == {"8": 0.35}
    after = planner.plan(params, "h100", "hf", path=path)
    figures = after["profile"]["figures"]
    # label's batch 64 reads the batch-32 measurement (the largest at or below it); LoRA steps of 8
    # records
    assert (
        figures["hf prefill_mfu @ batch 32"]["measured"]
        and figures["hf prefill_mfu @ batch 32"]["value"] == 0.25
    )
    assert figures["train_mfu @ batch 8"]["value"] == 0.35
    assert not figures["stage_start_s"]["measured"]  # what the run did not measure stays assumed
    assert {r["basis"] for r in after["stages"]} == {planner.PARTLY}
    label = lambda out: {r["stage"]: r for r in out["stages"]}["label"]  # noqa: E731
    assert label(after)["compute_h"] == pytest.approx(label(before)["compute_h"] * 0.3 / 0.25)
    assert "calibrated by" in planner.to_text(after)
    h200 = planner.plan(params, "h200", "hf", path=path)["profile"]["figures"]
    # another device: not credited
    assert "hf prefill_mfu" in h200 and not h200["hf prefill_mfu"]["measured"]
    sglang = planner.plan(params, "h100", "sglang", path=path)["profile"]["figures"]
    assert not sglang["sglang prefill_mfu"]["measured"]  # gpu.py measures the hf engine only
    # the command: calibrate, then plan for that GPU
    run.write_text(json.dumps(gpu_run("NVIDIA H200")))
    assert (
        main(
            [
                "plan",
                "--params",
                str(params_file),
                "--throughput",
                str(path),
                "--calibrate",
                str(run),
                "-S",
                "student.base_model=models/Qwen3-8B",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["profile"]["device"] == "h200" and out["profile"]["calibrated"].endswith("gpu.json")
    assert json.loads(path.read_text())["profiles"]["h200"]["calibrated"]["device"] == "NVIDIA H200"


@pytest.mark.parametrize(
    "run, message",
    [
        (gpu_run(shape="tiny"), "a --tiny run measures the mechanics"),
        (gpu_run(device="NVIDIA A100-SXM4-80GB"), "has no profile here"),
        ({**gpu_run(), "scoring_check": {"finite": False}}, "scoring check failed"),
    ],
)
def test_calibrate_refuses_what_is_not_a_gpu_measurement(
    tmp_path, params_file, capsys, run, message
):
    path = tmp_path / "throughput.json"
    shutil.copy(planner.THROUGHPUT, path)
    (tmp_path / "gpu.json").write_text(json.dumps(run))
    with pytest.raises(planner.CalibrationError, match=message):
        planner.calibrate(tmp_path / "gpu.json", path)
    assert (
        main(
            [
                "plan",
                "--params",
                str(params_file),
                "--throughput",
                str(path),
                "--calibrate",
                str(tmp_path / "gpu.json"),
            ]
        )
        == 2
    )
    assert message in capsys.readouterr().err
    assert path.read_text() == planner.THROUGHPUT.read_text()  # nothing written


def test_gates_flip_from_needs_n_to_decidable(params_file):
    small = {g["gate"]: g for g in planner.gates(planner.load(params_file))}
    gain = small["3 end-to-end gain"]
    assert gain["n"] == 3 and gain["verdict"].startswith("needs n = ")
    assert f"evaluate.n_tasks = {2 * gain['n_needed']:,}" in gain["verdict"]
    enough = planner.load(params_file, [f"evaluate.n_tasks={2 * gain['n_needed']}"])
    raised = {g["gate"]: g for g in planner.gates(enough)}
    assert raised["3 end-to-end gain"]["verdict"] == "decidable at min_effect"
    # untouched panels stay as they were a larger min_effect needs fewer items
    assert raised["3 retention"]["verdict"].startswith("needs n")
    easier = {
        g["gate"]: g for g in planner.gates(planner.load(params_file, ["gates.min_effect=0.2"]))
    }
    assert easier["3 end-to-end gain"]["n_needed"] < gain["n_needed"]


def test_seeds_preset_matches_the_seeds_counts_and_passes_its_checks(params_file):
    params = planner.load(params_file, preset="seeds")
    assert params.rollouts.n_tasks == 1000 and params.student.base_model == "models/Qwen3-8B"
    # the seeds' recipe: 3 epochs
    assert params.train.max_steps == -1 and params.train.num_train_epochs == 3
    # the file's own keys the preset leaves alone stay
    assert params.train.formats == ["demo", "hint"]
    for engine in flops.ENGINES:
        out = planner.plan(
            planner.load(ROOT / "params.yaml", preset="seeds"), "h100", engine, preset="seeds"
        )
        assert out["warnings"] == []  # teacher calls within max_calls, dollars within max_usd
        compared = {c["count"]: c for c in out["seeds_budget"]["compared"]}
        assert compared["labeled snapshots"]["this plan"] == 2000
        # 6 + 6 + 1 + 4 x 2 (seeds: 19)
        assert compared["labeling episodes a snapshot"]["this plan"] == 21
        assert (
            compared["1B micro-runs"]["this plan"] == 200
            and compared["2 training runs"]["this plan"] == 15  # 12 cells, random, all, self
        )
        text = planner.to_text(out)
        assert (
            "16-27 GPU-hours" in text
            and "~80,000 episodes" in text
            and "Counts against the seeds'" in text
        )
    over = planner.load(params_file, ["rollouts.n_tasks=5"], preset="seeds")
    assert over.rollouts.n_tasks == 5  # -S applies after the preset


def test_a_qwen_student_is_counted_in_qwen3s_vocabulary(params_file, tmp_path):
    """benchmarks/qwen_tokens.py measured the env's states in Qwen3's tokens; a Qwen student (by
    name or by its config.json's model_type) is priced on those, the offline student on its own."""
    qwen = planner.load(params_file, ["student.base_model=models/Qwen3-8B", "env.name=shop"])
    assert planner.vocabulary(qwen) == "qwen3"
    measured = json.loads(planner.THROUGHPUT.read_text())["env_tokens"]["shop"]["qwen3"]
    assert measured["measured"] and planner.student_tokens(qwen)["prompt"] == measured["prompt"]
    rows = {r["stage"]: r for r in planner.workload(qwen)}
    assert rows["rollouts"]["prompt_tokens"] == rows["rollouts"]["calls"] * measured["prompt"]
    assert planner.vocabulary(planner.load(params_file)) == "offline"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    assert (
        planner.vocabulary(planner.load(params_file, [f"student.base_model={tmp_path / 'm'}"]))
        == "qwen3"
    )
    assert "qwen3 vocabulary" in planner.to_text(planner.plan(qwen, "h100", "sglang"))
