"""scripts/serve.sh (`make server`) in its dry run: the engine's own venv, and the flags each engine
is started with (names as in SGLang's server_args.py and vLLM's arg_utils.py; no engine is installed
or started here), the LoRA rank and target modules from params.yaml, and the student.* params it
prints."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "serve.sh"


def dry_run(*args: str, make: bool = False, **env: str) -> tuple[int, dict, str]:
    command = ["make", "-s", "server", *args] if make else ["bash", str(SCRIPT), "--dry-run", *args]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )
    lines = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(": ")
        lines.setdefault(key.strip(), value)
    return done.returncode, lines, done.stdout + done.stderr


def launch(lines: dict) -> list[str]:
    words = shlex.split(lines["launch"].split(" > ")[0])
    assert words[0] == "env"
    return words[1:]


def flag(words: list[str], name: str) -> list[str]:
    """The values after `name` up to the next flag."""
    at = words.index(name) + 1
    values = []
    while at < len(words) and not words[at].startswith("--"):
        values.append(words[at])
        at += 1
    return values


@pytest.fixture(scope="module")
def train():
    from teachable.core.params import load_params

    return load_params(ROOT / "params.yaml").train


@pytest.mark.heavy
def test_sglang_flags(train):
    rc, lines, out = dry_run("--engine", "sglang", "--model", "models/Qwen3-8B")
    assert rc == 0, out
    assert "nothing is installed or started" in out
    assert lines["venv"].endswith("-m venv " + str(ROOT / ".venv-sglang"))
    assert lines["install"] == f"{ROOT}/.venv-sglang/bin/python -m pip install sglang"
    words = launch(lines)
    assert words[:3] == [f"{ROOT}/.venv-sglang/bin/python", "-m", "sglang.launch_server"]
    assert flag(words, "--model-path") == ["models/Qwen3-8B"] and flag(words, "--port") == ["30000"]
    assert flag(words, "--dtype") == ["bfloat16"] and flag(words, "--mem-fraction-static") == [
        "0.85"
    ]
    assert flag(words, "--enable-lora") == [] and flag(words, "--max-lora-rank") == [
        str(train.lora_r)
    ]
    assert flag(words, "--lora-target-modules") == list(train.target_modules)
    assert flag(words, "--max-loras-per-batch") == ["4"]
    # SGLang's prefix cache, on by default, serves the candidates
    assert "--disable-radix-cache" not in words
    assert not any(w.startswith("VLLM_") for w in words)
    assert lines["wait"].startswith("GET http://127.0.0.1:30000/health")
    assert (lines["student.backend"], lines["student.url"], lines["student.base_model"]) == (
        "sglang",
        "http://127.0.0.1:30000",
        "models/Qwen3-8B",
    )


@pytest.mark.heavy
def test_vllm_flags(train):
    rc, lines, out = dry_run(
        "--engine",
        "vllm",
        "--model",
        "models/Qwen3-8B",
        "--mem",
        "0.45",
        "--gpus",
        "1",
        "--max-loras",
        "8",
    )
    assert rc == 0, out
    assert lines["install"] == f"{ROOT}/.venv-vllm/bin/python -m pip install vllm"
    words = launch(lines)
    assert words[:2] == ["VLLM_ALLOW_RUNTIME_LORA_UPDATING=True", "CUDA_VISIBLE_DEVICES=1"]
    assert words[2:5] == [f"{ROOT}/.venv-vllm/bin/vllm", "serve", "models/Qwen3-8B"]
    assert flag(words, "--port") == ["8000"] and flag(words, "--dtype") == ["bfloat16"]
    assert (
        flag(words, "--gpu-memory-utilization") == ["0.45"]
        and flag(words, "--enable-prefix-caching") == []
    )
    assert flag(words, "--enable-lora") == [] and flag(words, "--max-loras") == ["8"]
    rank = int(flag(words, "--max-lora-rank")[0])
    # vLLM's MaxLoRARanks
    assert rank in (1, 8, 16, 32, 64, 128, 256, 320, 512) and rank >= train.lora_r
    assert "--mem-fraction-static" not in words and "--lora-target-modules" not in words
    assert lines["student.url"] == "http://127.0.0.1:8000" and lines["student.backend"] == "vllm"


@pytest.mark.heavy
@pytest.mark.parametrize(
    "rank, sglang, vllm", [(8, 8, 8), (24, 24, 32), (64, 64, 64), (300, 300, 320)]
)
def test_rank_covers_lora_r(rank, sglang, vllm):
    """SGLang takes any rank; vLLM only its listed ones, so the rank is rounded up to the next."""
    for engine, expected in (("sglang", sglang), ("vllm", vllm)):
        rc, lines, out = dry_run("--engine", engine, "--model", "m", "--rank", str(rank))
        assert rc == 0, out
        assert flag(launch(lines), "--max-lora-rank") == [str(expected)]
    rc, _, out = dry_run("--engine", "vllm", "--model", "m", "--rank", "600")
    assert rc == 2 and "up to 512" in out


@pytest.mark.heavy
def test_make_server_passes_its_variables():
    rc, lines, out = dry_run(
        "ENGINE=vllm",
        "MODEL=models/Qwen3-8B",
        "PORT=8100",
        "LORA_RANK=16",
        "MEM=0.5",
        "DRY_RUN=1",
        make=True,
    )
    assert rc == 0, out
    words = launch(lines)
    assert flag(words, "--port") == ["8100"] and flag(words, "--max-lora-rank") == ["16"]
    assert flag(words, "--gpu-memory-utilization") == ["0.5"]
    assert lines["student.url"] == "http://127.0.0.1:8100"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--engine", "tgi", "--model", "m"], "sglang or vllm"),
        (["--engine", "sglang"], "--model PATH"),
        (["--engine", "sglang", "--model", "m", "--rank", "x"], "whole number"),
    ],
)
def test_refuses_bad_arguments(args, message):
    rc, _, out = dry_run(*args)
    assert rc == 2 and message in out
