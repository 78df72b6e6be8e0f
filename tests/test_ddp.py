"""Data-parallel training for real: `accelerate launch` with the repo's DDP and FSDP configs starts
two CPU processes joined by gloo (what `train.launcher` does on GPUs with NCCL). They must form one
group, split the global batch, write the adapter once, and train the same adapter as one process
does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.heavy  # `make test-fast` leaves it out

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "ddp_worker.py"
CONFIGS = ROOT / "teachable" / "training" / "accelerate"


def run(command: list[str], scratch: Path) -> list[dict]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(p.read_text()) for p in sorted(scratch.glob("rank-*.json"))]


def adapter(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def single(tiny_student_dir, tmp_path_factory):
    scratch = tmp_path_factory.mktemp("single")
    ranks = run(
        [
            sys.executable,
            str(WORKER),
            str(tiny_student_dir),
            str(scratch / "adapter"),
            str(scratch),
        ],
        scratch,
    )
    return ranks, scratch / "adapter"


@pytest.mark.parametrize("config", ["ddp", "fsdp"])
def test_two_processes_split_the_batch_write_once_and_train_as_one(
    config, single, tiny_student_dir, tmp_path
):
    # a free port: another launch (a parallel test run) may hold 29500
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(CONFIGS / f"{config}.yaml"),
        "--num_processes",
        "2",
        "--mixed_precision",
        "no",
        "--main_process_port",
        "0",
    ]
    ranks = run(
        [*launch, str(WORKER), str(tiny_student_dir), str(tmp_path / "adapter"), str(tmp_path)],
        tmp_path,
    )
    (alone,), alone_adapter = single
    assert alone["processes"] == 1 and alone["per_device_batch"] == 4

    assert len(ranks) == 2 and all(r["processes"] == 2 for r in ranks)
    assert [r["main"] for r in ranks] == [True, False]  # rank 0 alone writes
    # the global batch of 4, split
    assert all(r["per_device_batch"] == 2 and r["steps"] == 6 for r in ranks)
    assert ranks[0]["loss_curve"] == ranks[1]["loss_curve"]  # the logged loss is the group's
    written = adapter(tmp_path / "adapter")
    expected = adapter(alone_adapter)
    assert written.keys() == expected.keys()
    assert any(v.abs().sum() > 0 for k, v in written.items() if "lora_B" in k)  # it trained
    for key, value in expected.items():
        torch.testing.assert_close(written[key], value, atol=1e-5, rtol=1e-4)
