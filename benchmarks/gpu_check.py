"""One GPU check, one JSON: what a lent GPU machine should run first (`benchmarks/gpu_check.sh`,
`make gpu-check`). Within 8 minutes on one H100 (`--budget-s`):

1. `benchmarks/gpu.py`: the `hf` backend scoring states and LoRA SFT steps on a Qwen3-8B-shape model
   (bf16, random weights from its config), with their MFU (about half the budget: `--gpu-budget-s`).
2. The `hf` backend against a real engine on the same prompts
   (`teachable.policy.server.compare_with_hf`: 8 BabyAI states, the engine and the in-process copy
   of `--model`, in bf16). Needs an engine already running on this machine with room left for the
   in-process copy (`make server ENGINE=sglang MODEL=... MEM=0.5`) and the model's weights on disk;
   without `--engine/--url/--model` it is skipped and the reason recorded. Passes when the
   largest |score difference| is within `--tolerance` nats a scored token (default 0.1, bf16 with
   another engine's kernels) times the longest candidate's tokens, and the greedy replies agree on
   at least 6 of 8 states.
3. A bf16 FSDP2 + LoRA step on the GPUs present: `accelerate launch` with
   teachable/training/accelerate/fsdp.yaml, one process a GPU, NCCL, through the project's own
   `train_lora` (benchmarks/fsdp_step.py; Qwen3-0.6B's layer shape, 3 steps).

The JSON is gpu.py's (what `python -m teachable plan --calibrate` reads) with `engine_check`,
`fsdp_lora` and `gpu_check` (phases, seconds, what passed) added.

    python benchmarks/gpu_check.py [--out benchmarks/gpu_check.json] \
        [--engine sglang --url URL --model PATH]
    # all of it on the CPU: a tiny model, float32, two gloo processes; the engine comparison
    # skipped (no engine runs on a CPU)
    python benchmarks/gpu_check.py --tiny
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FSDP_CONFIG = ROOT / "teachable" / "training" / "accelerate" / "fsdp.yaml"
# nats: bf16 log-probs from two engines' kernels (SDPA vs FlashInfer / FlashAttention)
TOLERANCE_PER_TOKEN = 0.1
MIN_AGREE = 6  # greedy replies equal on at least 6 of the 8 states (bf16 can flip a near tie)


def load_gpu_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_gpu", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def engine_check(args, tiny: bool) -> dict:
    if tiny:
        return {
            "ran": False,
            "skipped": "--tiny: no engine runs on the CPU (SGLang and vLLM need a GPU); the same "
            "comparison runs against a fake engine in tests/test_server_backend.py",
        }
    if not (args.engine and args.url and args.model):
        return {
            "ran": False,
            "skipped": "no --engine/--url/--model: start an engine with `make server ENGINE=sglang "
            "MODEL=PATH MEM=0.5` and pass its URL and the model's local path",
        }
    from transformers import AutoTokenizer

    from teachable.envs.babyai import ACTIONS
    from teachable.policy.prompts import completion_ids
    from teachable.policy.server import ServerError, compare_with_hf

    started = time.perf_counter()
    longest = max(
        len(completion_ids(AutoTokenizer.from_pretrained(args.model), a)) for a in ACTIONS
    )
    tolerance = round(args.tolerance * longest, 4)
    try:
        diff, agree = compare_with_hf(args.engine, args.url, args.model)
    except ServerError as err:
        return {
            "ran": False,
            "skipped": f"engine not usable: {err}",
            "engine": args.engine,
            "url": args.url,
        }
    return {
        "ran": True,
        "engine": args.engine,
        "url": args.url,
        "model": args.model,
        "states": 8,
        "max_abs_diff": round(float(diff), 5),
        "tolerance": tolerance,
        "tolerance_rule": (
            f"{args.tolerance} nats a scored token x {longest} tokens (the longest candidate)"
        ),
        "greedy_agree": int(agree),
        "min_agree": MIN_AGREE,
        "passed": bool(diff <= tolerance and agree >= MIN_AGREE),
        "seconds": round(time.perf_counter() - started, 1),
    }


def fsdp_check(tiny: bool, steps: int, timeout_s: float) -> dict:
    import torch

    gpus = 0 if tiny else torch.cuda.device_count()
    if not tiny and gpus == 0:
        return {"ran": False, "skipped": "no GPU visible"}
    processes = 2 if tiny else gpus
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    if tiny:
        env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        worker = ROOT / "benchmarks" / "fsdp_step.py"
        spec = importlib.util.spec_from_file_location("benchmark_fsdp_step", worker)
        step = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(step)
        model = step.make(scratch / "model", tiny)  # here: the worker processes load it from disk
        launch = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(FSDP_CONFIG),
            "--num_processes",
            str(processes),
            "--mixed_precision",
            "no" if tiny else "bf16",
            "--main_process_port",
            "0",  # a free port, not 29500 (another launch may hold it)
            str(worker),
            "run",
            str(scratch / "model"),
            str(scratch / "adapter"),
            str(scratch),
            "--steps",
            str(steps),
        ]
        try:
            done = subprocess.run(
                launch, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            return {
                "ran": True,
                "passed": False,
                "error": f"timed out after {timeout_s:.0f} s",
                "model": model,
            }
        ranks = [json.loads(p.read_text()) for p in sorted(scratch.glob("rank-*.json"))]
        adapter = (scratch / "adapter" / "adapter_model.safetensors").is_file()
    out = {
        "ran": True,
        "processes": processes,
        "model": model,
        "steps_asked": steps,
        "adapter_written": adapter,
        "ranks": ranks,
        "seconds": round(time.perf_counter() - started, 1),
        "command": " ".join(
            launch[1:2] + ["accelerate.commands.launch"] + launch[4:9] + ["benchmarks/fsdp_step.py"]
        ),
    }
    if done.returncode:
        out.update(passed=False, error=done.stderr[-3000:])
        return out
    # accelerate applies an FSDP config only on accelerators: on the CPU the same launch runs as
    # MULTI_CPU (data parallel over gloo), so --tiny checks the launch, the group, the steps and the
    # adapter, not the sharding
    expected = (
        {
            "distributed_type": "MULTI_CPU",
            "fsdp_version": None,
            "mixed_precision": "no",
            "backend": "gloo",
        }
        if tiny
        else {
            "distributed_type": "FSDP",
            "fsdp_version": 2,
            "mixed_precision": "bf16",
            "backend": "nccl",
        }
    )
    out["expected"] = expected
    if tiny:
        out["note"] = (
            "on the CPU accelerate runs the FSDP config as MULTI_CPU (gloo data parallel): "
            "FSDP2 sharding and bf16 are checked only on a GPU"
        )
    out["passed"] = bool(
        len(ranks) == processes
        and adapter
        and all(
            r["steps"] == steps
            and r["finite"]
            and r["processes"] == processes
            and all(r[k] == v for k, v in expected.items())
            for r in ranks
        )
    )
    return out


def shown(path: Path) -> str:
    """The path relative to the repository where it is inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tiny", action="store_true", help="on the CPU: tiny model, float32, gloo, no engine"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "gpu_check.json")
    parser.add_argument(
        "--engine", choices=["sglang", "vllm"], help="the running engine to compare with hf"
    )
    parser.add_argument("--url", help="its URL (what `make server` printed as student.url)")
    parser.add_argument(
        "--model", help="the local model path the engine serves (loaded in-process as well)"
    )
    parser.add_argument(
        "--tolerance", type=float, default=TOLERANCE_PER_TOKEN, help="nats a scored token"
    )
    parser.add_argument(
        "--budget-s", type=float, default=480.0, help="the whole check's time (8 minutes)"
    )
    parser.add_argument(
        "--gpu-budget-s", type=float, default=240.0, help="benchmarks/gpu.py's share"
    )
    parser.add_argument("--fsdp-steps", type=int, default=3)
    args = parser.parse_args(argv)
    import torch

    if not args.tiny and not torch.cuda.is_available():
        parser.error("no GPU here: --tiny runs the check's mechanics on the CPU")
    started = time.perf_counter()
    phases = {}

    gpu = load_gpu_benchmark()
    with tempfile.TemporaryDirectory() as scratch:
        gpu_args = ["--out", str(Path(scratch) / "gpu.json"), "--params", str(ROOT / "params.yaml")]
        gpu_args += (
            ["--tiny", "--seconds", "0.2"] if args.tiny else ["--budget-s", str(args.gpu_budget_s)]
        )
        result = gpu.main(gpu_args)
    phases["gpu.py"] = round(time.perf_counter() - started, 1)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

    at = time.perf_counter()
    result["engine_check"] = engine_check(args, args.tiny)
    phases["engine_check"] = round(time.perf_counter() - at, 1)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

    at = time.perf_counter()
    left = max(60.0, args.budget_s - (at - started))
    result["fsdp_lora"] = fsdp_check(args.tiny, args.fsdp_steps, timeout_s=left)
    phases["fsdp_lora"] = round(time.perf_counter() - at, 1)

    elapsed = round(time.perf_counter() - started, 1)
    passed = {
        "scoring_finite": bool(result["scoring_check"]["finite"]),
        "scoring_measured": bool(result["scoring"]),
        "lora_measured": bool(result["lora"]),
        "engine_check": result["engine_check"].get("passed")
        if result["engine_check"]["ran"]
        else None,
        "fsdp_lora": result["fsdp_lora"].get("passed") if result["fsdp_lora"]["ran"] else None,
    }
    result["gpu_check"] = {
        "tiny": args.tiny,
        "elapsed_s": elapsed,
        "budget_s": args.budget_s,
        "within_budget": elapsed <= args.budget_s,
        "phases_s": phases,
        "passed": passed,
        "calibrate": f"python -m teachable plan --calibrate {shown(args.out)}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"gpu check ({'tiny, CPU' if args.tiny else result['device']}): "
        f"{elapsed} s of {args.budget_s:.0f}; phases {phases}"
    )
    for name, ok in passed.items():
        reason = (
            result.get(name, {}).get("skipped") if name in ("engine_check", "fsdp_lora") else None
        )
        print(f"  {name}: {'skipped (' + reason + ')' if ok is None else 'pass' if ok else 'FAIL'}")
    print(
        f"written to {args.out}; then {result['gpu_check']['calibrate']}"
        + (
            " (a --tiny run is refused there: it measures the mechanics, not a GPU)"
            if args.tiny
            else ""
        )
    )
    return result


if __name__ == "__main__":
    main()
