"""benchmarks/gpu.py on its tiny CPU config: it runs HFPolicy and a LoRA step end to end, writes
every field, its MFUs are fractions, its FLOP formulas are torch's own count of the matmuls the
scoring runs, its parameter count and FLOPs are the planner's (teachable/plan/flops.py), and its
JSON is what `plan --calibrate` reads."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gpu():
    spec = importlib.util.spec_from_file_location("benchmark_gpu", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.mark.heavy
def test_tiny_run_writes_every_field(gpu, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the LoRA recipe: params.yaml's train section
    out = tmp_path / "gpu.json"
    result = gpu.main(["--tiny", "--seconds", "0.2", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["device"] == "cpu" and result["model"]["shape"] == "tiny"
    # float32
    assert result["scoring_check"]["finite"] and result["scoring_check"]["max_abs_diff"] < 1e-3
    assert [r["batch"] for r in result["scoring"]] == [4, 8] and [
        r["batch"] for r in result["lora"]
    ] == [2]
    for row in result["scoring"]:
        assert {"states_per_s", "computed_tokens_per_s", "tflops_per_s", "mfu"} <= set(row)
        assert 0 < row["mfu"] <= 1
    for row in result["lora"]:
        assert {"seq_len", "seconds_per_step", "tokens_per_s", "mfu", "mfu_all_logits"} <= set(row)
        assert 0 < row["mfu"] < row["mfu_all_logits"] <= 1
    assert set(result["best"]) == set(result["meets_goals"]) == {"scoring_mfu", "lora_mfu"}
    assert result["lora_recipe"]["target_modules"] and not result["skipped"]
    # the planner's count of the same shape and adapter (one definition of N and M for both)
    from teachable.plan.flops import Shape

    shape = Shape.from_config(gpu.TINY)
    assert result["model"]["n_layer_params"] == shape.n_layer_params
    recipe = result["lora_recipe"]
    assert result["lora"][0]["lora_params"] == shape.lora_params(
        recipe["lora_r"], recipe["target_modules"]
    )
    # its JSON is what `plan --calibrate` folds in (a tiny run refused; the same fields from a GPU
    # run taken)
    from teachable.plan import planner

    throughput = tmp_path / "throughput.json"
    throughput.write_text(planner.THROUGHPUT.read_text())
    with pytest.raises(planner.CalibrationError, match="tiny"):
        planner.calibrate(out, throughput)
    as_gpu = {
        **result,
        "device": "NVIDIA H100 80GB HBM3",
        "model": {**result["model"], "shape": "Qwen3-8B"},
    }
    out.write_text(json.dumps(as_gpu))
    cal = planner.calibrate(out, throughput)["hf_prefill_mfu_by_batch"]
    assert set(cal) == {"4", "8"} and all(v > 0 for v in cal.values())


def test_scoring_flops_are_the_matmuls_run(gpu):
    """The formula's linear part (decoder layers on the prompt and the candidate tokens after the
    first, lm_head where a candidate token is scored) is exactly what torch counts in
    HFPolicy.score's matmuls."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import Qwen3Config

    from teachable.policy.hf import HFPolicy

    config = Qwen3Config(**gpu.TINY)
    model = gpu.build_model(config, torch.device("cpu"), torch.float32)
    shape = gpu.Shape.of(model)
    policy = HFPolicy(model, gpu.word_tokenizer(config.vocab_size), batch_size=4)
    rng = np.random.default_rng(0)
    prompt, n_cands, cand_tokens = 40, 5, 4
    actions = [
        " ".join(f"w{i}" for i in rng.integers(0, 1000, size=cand_tokens - 1))
        for _ in range(n_cands)
    ]
    with FlopCounterMode(display=False) as counter:
        policy.score(gpu.random_states(rng, 4, prompt, shape.vocab), [actions] * 4)
    counts = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    matmuls = sum(n for op, n in counts.items() if op in ("aten.mm", "aten.bmm", "aten.addmm"))
    assert matmuls == 4 * gpu.scoring_flops(shape, prompt, n_cands, cand_tokens, attention=False)


def test_one_parameter_count_for_the_planner_and_the_benchmark(gpu):
    """Shape.from_config (the planner, from a config) counts the decoder layers' matrices as
    Shape.of does on the built model (the benchmark), on the tiny config and on Qwen3-8B's (6.95e9
    of 8.19e9, built on `meta`)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from teachable.plan.flops import Shape

    for config in (gpu.TINY, gpu.QWEN3_8B):
        with torch.device("meta"):
            model = Qwen3ForCausalLM(Qwen3Config(**config))
        assert Shape.of(model) == Shape.from_config(config)
        matrices = sum(p.numel() for p in model.parameters() if p.ndim == 2)
        assert Shape.from_config(config).n_params == matrices
    assert Shape.from_config(gpu.QWEN3_8B).n_layer_params == 6_945_767_424


def test_word_tokenizer_gives_one_token_a_word(gpu):
    tokenizer = gpu.word_tokenizer(1000)
    assert len(tokenizer) == 1000 and tokenizer.pad_token != tokenizer.eos_token == "<|im_end|>"
    from teachable.policy.prompts import completion_text, render_prompt

    assert tokenizer(completion_text(tokenizer, "w1 w2"), add_special_tokens=False).input_ids == [
        1,
        2,
        999,
    ]
    prompt = render_prompt(tokenizer, [{"role": "user", "content": "w5 w6 w7"}])
    assert tokenizer(prompt, add_special_tokens=False).input_ids == [5, 6, 7, 999]
