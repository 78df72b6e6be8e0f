"""LoRA fine-tuning with TRL: `SFTTrainer` on prompt-completion records, or `DPOTrainer` on preference pairs.

Every hyperparameter comes from `params.yaml` (`train`); CPU or GPU is chosen automatically; training curves go
to the active MLflow run (`report_to=["mlflow"]`); the adapter is saved as safetensors; a killed run restarted
with the same checkpoint directory resumes from its last checkpoint.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.trainer_utils import get_last_checkpoint

from teachable.config import TrainParams
from teachable.policy.hf import pick_dtype
from teachable.policy.prompts import completion_text, render_prompt

log = logging.getLogger(__name__)


def to_text(records: list[dict], tokenizer) -> list[dict]:
    """Chat-message records -> the student's own prompt and completion strings (as the policy scores them)."""
    return [{"prompt": render_prompt(tokenizer, r["messages"]), "completion": completion_text(tokenizer, r["action"])}
            for r in records]


def to_pairs(pairs: list[dict], tokenizer) -> list[dict]:
    return [{"prompt": render_prompt(tokenizer, p["messages"]), "chosen": completion_text(tokenizer, p["chosen"]),
             "rejected": completion_text(tokenizer, p["rejected"])} for p in pairs]


def lora_config(p: TrainParams) -> LoraConfig:
    return LoraConfig(r=p.lora_r, lora_alpha=p.lora_alpha, lora_dropout=p.lora_dropout,
                      target_modules=list(p.target_modules), task_type="CAUSAL_LM")


def _common_args(p: TrainParams, checkpoints: Path, seed: int, report: bool) -> dict:
    on_gpu = torch.cuda.is_available()
    return dict(
        output_dir=str(checkpoints), per_device_train_batch_size=p.batch_size,
        gradient_accumulation_steps=p.gradient_accumulation_steps, learning_rate=p.learning_rate,
        num_train_epochs=p.num_train_epochs, max_steps=p.max_steps, logging_steps=1, save_strategy="steps",
        save_steps=p.save_steps, save_total_limit=1, seed=seed, report_to=["mlflow"] if report else [],
        use_cpu=not on_gpu, bf16=on_gpu and torch.cuda.is_bf16_supported(), disable_tqdm=True,
        dataloader_num_workers=0,
    )


def train_lora(base_model: str, records: list[dict], p: TrainParams, out_dir: str | Path, *,
               checkpoint_dir: str | Path, seed: int = 0, report: bool = True, model=None, tokenizer=None) -> dict:
    """Train one LoRA adapter on `records` (supervision records for sft, preference pairs for dpo) and save it.

    Checkpoints go to `checkpoint_dir`, outside the output (DVC clears a stage's outputs before running it) and
    keyed by the caller to the params and data, so a rerun resumes only the same run.

    Pass an already loaded `model`/`tokenizer` to train many adapters on one base load (micro-runs); the base
    weights are never changed, each call gets a fresh adapter.
    """
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    out = Path(out_dir)
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(base_model)
    if model is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = AutoModelForCausalLM.from_pretrained(base_model, dtype=pick_dtype("auto", torch.device(device)))
    args = _common_args(p, Path(checkpoint_dir), seed, report)
    if p.method == "sft":
        dataset = Dataset.from_list(to_text(records, tokenizer))
        trainer = SFTTrainer(model=model, args=SFTConfig(**args, max_length=2048), train_dataset=dataset,
                             processing_class=tokenizer, peft_config=lora_config(p))
    else:
        dataset = Dataset.from_list(to_pairs(records, tokenizer))
        trainer = DPOTrainer(model=model, args=DPOConfig(**args, beta=p.dpo_beta), train_dataset=dataset,
                             processing_class=tokenizer, peft_config=lora_config(p))
    last = get_last_checkpoint(args["output_dir"]) if Path(args["output_dir"]).is_dir() else None
    if last:
        log.info("resuming from %s", last)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=last)
    trainer.model.save_pretrained(out)  # adapter_model.safetensors + adapter_config.json
    trainer.model.unload()  # take the LoRA layers out again: a model passed in is left as it came
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    # the trainer's own average covers only the steps run in this call; after a resume (possibly from the last
    # checkpoint, with no step left) use the logged losses, which the checkpoint carries from before the resume
    train_loss = round(float(np.mean(losses)), 6) if last and losses else round(result.training_loss, 6)
    return {"method": p.method, "n_records": len(records), "train_loss": train_loss,
            "final_loss": losses[-1] if losses else None, "steps": trainer.state.global_step,
            "seconds": round(time.time() - started, 2), "resumed_from": last, "adapter_dir": str(out)}
