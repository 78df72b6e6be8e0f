"""A few LoRA SFT steps through the project's own training path (`train_lora`: TRL's SFTTrainer,
params' LoRA recipe) under `accelerate launch` with the repo's FSDP2 config; benchmarks/gpu_check.py
starts it on the GPUs present (bf16, NCCL) or, with --tiny, on two CPU processes (float32, gloo).

    # a random model of Qwen3's architecture, saved
    python benchmarks/fsdp_step.py make MODEL_DIR [--tiny]
    accelerate launch --config_file teachable/training/accelerate/fsdp.yaml --num_processes N \\
        benchmarks/fsdp_step.py run MODEL_DIR OUT_DIR SCRATCH_DIR [--steps 3]

`make` builds Qwen3's architecture from a config (random weights, nothing downloaded) with a small
BPE tokenizer trained on BabyAI prompts: --tiny the offline student's CPU size, else Qwen3-0.6B's
layer shape (28 layers, hidden 1024; the vocabulary is the small tokenizer's), which shards and
steps like the 8B in a fraction of the time. Every process writes SCRATCH_DIR/rank-<i>.json:
processes, backend, mixed precision, the parameters' dtypes, steps, the loss curve, seconds."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

# Qwen3-0.6B's config.json, less its vocabulary
QWEN3_06B_LAYERS = dict(
    hidden_size=1024,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    intermediate_size=3072,
)
TINY_LAYERS = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=64,
)


def make(model_dir: Path, tiny: bool) -> dict:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from teachable.envs.babyai import ACTIONS
    from teachable.policy.prompts import build_messages
    from teachable.training.student.build import train_tokenizer
    from teachable.training.supervision import EXAMPLE_LABELED

    texts = [
        m["content"]
        for m in build_messages(
            EXAMPLE_LABELED["mission"],
            EXAMPLE_LABELED["obs"],
            ACTIONS,
            EXAMPLE_LABELED["history"],
            "Teacher: do 'go forward'.",
        )
    ]
    tokenizer = train_tokenizer(texts + ACTIONS, 400)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        **(TINY_LAYERS if tiny else QWEN3_06B_LAYERS),
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return {
        "shape": "tiny" if tiny else "Qwen3-0.6B layers",
        "n_params": sum(p.numel() for p in model.parameters()),
    }


def run(model_dir: str, out: Path, scratch: Path, steps: int) -> None:
    from accelerate.state import AcceleratorState

    from teachable.core.params import TrainParams, load_params
    from teachable.training.lora import train_lora, training_processes
    from teachable.training.supervision import EXAMPLE_LABELED, supervision_record

    processes = training_processes()
    recipe = (
        load_params("params.yaml").train
        if Path("params.yaml").is_file()
        else TrainParams.defaults()
    )
    params = recipe.model_copy(
        update={
            "max_steps": steps,
            "save_steps": steps,
            "batch_size": 2 * processes.num_processes,
            "gradient_accumulation_steps": 1,
            "method": "sft",
        }
    )
    records = [supervision_record(EXAMPLE_LABELED, "demo")] * 16
    started = time.perf_counter()
    metrics = train_lora(
        model_dir, records, params, out, report=False, checkpoint_dir=scratch / "checkpoints"
    )
    seconds = time.perf_counter() - started
    state = AcceleratorState()
    losses = [c["loss"] for c in metrics["loss_curve"]]
    (scratch / f"rank-{processes.process_index}.json").write_text(
        json.dumps(
            {
                "processes": processes.num_processes,
                "main": processes.is_main_process,
                "distributed_type": str(processes.distributed_type).split(".")[-1],
                "backend": torch.distributed.get_backend()
                if torch.distributed.is_initialized()
                else None,
                "device": str(processes.device),
                "mixed_precision": str(state.mixed_precision),
                "fsdp_version": getattr(getattr(state, "fsdp_plugin", None), "fsdp_version", None),
                "steps": metrics["steps"],
                "loss_curve": metrics["loss_curve"],
                "finite": bool(losses)
                and all(loss == loss and abs(loss) != float("inf") for loss in losses),
                "seconds": round(seconds, 2),
                "lora_r": params.lora_r,
                "target_modules": list(params.target_modules),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "make":
        print(json.dumps(make(Path(sys.argv[2]), "--tiny" in sys.argv)))
    elif sys.argv[1] == "run":
        steps = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 3
        run(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), steps)
    else:
        sys.exit(__doc__)
