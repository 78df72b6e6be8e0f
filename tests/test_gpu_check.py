"""benchmarks/gpu_check.py (`benchmarks/gpu_check.sh`, `make gpu-check`) in its --tiny form on the
CPU: gpu.py's scoring and LoRA rows, the engine comparison skipped with its reason, a LoRA step
launched with the repo's FSDP config on two gloo processes through `train_lora`, one JSON with every
part, and `teachable plan --calibrate` reading it (refusing the tiny shape by name; taking the same
JSON from a Qwen3-8B-shape run on an H100)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.heavy  # `make test-fast` leaves it out

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    spec = importlib.util.spec_from_file_location(
        "benchmark_gpu_check", ROOT / "benchmarks" / "gpu_check.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    try:
        result = module.main(["--tiny", "--out", str(out)])
    finally:
        sys.modules.pop("benchmark_gpu", None)
    return out, result


def test_tiny_json_has_every_part(tiny_run):
    out, result = tiny_run
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    # gpu.py's part, as `plan --calibrate` reads it
    assert (
        data["device"] == "cpu"
        and data["model"]["shape"] == "tiny"
        and data["scoring_check"]["finite"]
    )
    assert (
        data["scoring"]
        and data["lora"]
        and all(0 < r["mfu"] <= 1 for r in data["scoring"] + data["lora"])
    )
    # the engine comparison: skipped on the CPU, and why
    assert (
        data["engine_check"]["ran"] is False
        and "no engine runs on the CPU" in data["engine_check"]["skipped"]
    )
    # the LoRA step under accelerate launch with fsdp.yaml: two processes, one group, the adapter
    # written once
    fsdp = data["fsdp_lora"]
    assert fsdp["ran"] and fsdp["passed"], fsdp.get("error")
    assert fsdp["processes"] == 2 and len(fsdp["ranks"]) == 2 and fsdp["adapter_written"]
    assert [r["main"] for r in fsdp["ranks"]] == [True, False]
    for rank in fsdp["ranks"]:
        assert (
            rank["steps"] == fsdp["steps_asked"] == 3
            and rank["finite"]
            and rank["backend"] == "gloo"
        )
        assert rank["mixed_precision"] == "no"
        # accelerate runs an FSDP config on the CPU as MULTI_CPU: sharding and bf16 are left to the
        # GPU run
        assert rank["distributed_type"] == "MULTI_CPU" and rank["fsdp_version"] is None
    # the group's loss, logged by both
    assert fsdp["ranks"][0]["loss_curve"] == fsdp["ranks"][1]["loss_curve"]
    assert "MULTI_CPU" in fsdp["note"] and fsdp["expected"]["distributed_type"] == "MULTI_CPU"
    check = data["gpu_check"]
    assert (
        check["tiny"]
        and check["within_budget"]
        and set(check["phases_s"]) == {"gpu.py", "engine_check", "fsdp_lora"}
    )
    assert check["passed"] == {
        "scoring_finite": True,
        "scoring_measured": True,
        "lora_measured": True,
        "engine_check": None,
        "fsdp_lora": True,
    }


def test_calibrate_reads_it(tiny_run, tmp_path, capsys):
    """`python -m teachable plan --calibrate`: the tiny JSON is refused by name (it measures
    mechanics, not a GPU); the same JSON as an H100's Qwen3-8B-shape run is folded into the
    throughput file's h100 profile."""
    from teachable.__main__ import main
    from teachable.plan import planner

    out, result = tiny_run
    throughput = tmp_path / "throughput.json"
    throughput.write_text(planner.THROUGHPUT.read_text())
    args = [
        "plan",
        "--params",
        str(ROOT / "params.yaml"),
        "--throughput",
        str(throughput),
        "--json",
    ]
    assert main([*args, "--calibrate", str(out)]) == 2
    assert "tiny" in capsys.readouterr().err
    as_gpu = tmp_path / "gpu_check.json"
    as_gpu.write_text(
        json.dumps(
            {
                **result,
                "device": "NVIDIA H100 80GB HBM3",
                "model": {**result["model"], "shape": "Qwen3-8B"},
            }
        )
    )
    assert main([*args, "--calibrate", str(as_gpu)]) == 0
    captured = capsys.readouterr()
    assert "calibrated profile h100" in captured.err
    calibrated = json.loads(throughput.read_text())["profiles"]["h100"]["calibrated"]
    assert set(calibrated["hf_prefill_mfu_by_batch"]) == {
        str(r["batch"]) for r in result["scoring"]
    }
    assert set(calibrated["train_mfu_by_batch"]) == {str(r["batch"]) for r in result["lora"]}
    assert json.loads(captured.out)  # the plan, priced on the calibrated profile


def test_no_gpu_no_tiny_is_refused():
    spec = importlib.util.spec_from_file_location(
        "benchmark_gpu_check2", ROOT / "benchmarks" / "gpu_check.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(SystemExit):
        module.main([])


def test_shell_wrapper_and_make_target():
    text = (ROOT / "benchmarks" / "gpu_check.sh").read_text()
    assert 'exec "$PY" benchmarks/gpu_check.py "$@"' in text
    assert "bash benchmarks/gpu_check.sh $(GPU_CHECK_ARGS)" in (ROOT / "Makefile").read_text()
