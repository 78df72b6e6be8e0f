"""LoRA fine-tuning with TRL: `SFTTrainer` on prompt-completion records, or `DPOTrainer` on
preference pairs.

Every hyperparameter comes from `params.yaml` (`train`); CPU or GPU is chosen automatically;
training curves go to the active MLflow run (transformers' `MLflowCallback`: per-step loss, and
`train_loss` once, for the whole run even after a resume); the adapter is saved as safetensors and
names its base model relative to the workspace, so a copied or moved workspace loads its own student
(`anchor_base_model`, `load_adapted_model`); a killed run restarted with the same checkpoint
directory resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from accelerate import PartialState
from peft import LoraConfig, set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from transformers.integrations import MLflowCallback
from transformers.trainer_utils import get_last_checkpoint

from teachable.core.params import TrainParams
from teachable.policy.hf import pick_dtype
from teachable.policy.prompts import completion_text, render_prompt

log = logging.getLogger(__name__)
ADAPTER_CONFIG, BASE_MODEL_FILE = "adapter_config.json", "base_model.json"


def to_text(records: list[dict], tokenizer) -> list[dict]:
    """Chat-message records -> the student's own prompt and completion strings (as the policy scores
    them)."""
    return [
        {
            "prompt": render_prompt(tokenizer, r["messages"]),
            "completion": completion_text(tokenizer, r["action"]),
        }
        for r in records
    ]


def to_pairs(pairs: list[dict], tokenizer) -> list[dict]:
    return [
        {
            "prompt": render_prompt(tokenizer, p["messages"]),
            "chosen": completion_text(tokenizer, p["chosen"]),
            "rejected": completion_text(tokenizer, p["rejected"]),
        }
        for p in pairs
    ]


def lora_config(p: TrainParams) -> LoraConfig:
    return LoraConfig(
        r=p.lora_r,
        lora_alpha=p.lora_alpha,
        lora_dropout=p.lora_dropout,
        target_modules=list(p.target_modules),
        task_type="CAUSAL_LM",
    )


def training_processes() -> PartialState:
    """The processes of this training run (one, or those `accelerate launch` / torchrun started),
    asked the way the Trainer will ask: on a machine without a GPU, `PartialState()` alone sees a
    single process on every rank (so each would think it is the main one and take the whole batch);
    `cpu=True` joins the gloo process group."""
    return PartialState(cpu=not torch.cuda.is_available())


def per_device_batch(batch_size: int, processes: int) -> int:
    """`train.batch_size` is the global batch: under `accelerate launch` with N processes each takes
    1/N of it, so a recipe takes the same steps on one GPU and on eight."""
    if batch_size % processes:
        raise ValueError(
            f"train.batch_size={batch_size} is not a multiple of the {processes} training processes"
        )
    return batch_size // processes


def _common_args(p: TrainParams, checkpoints: Path, seed: int) -> dict:
    on_gpu = torch.cuda.is_available()
    return dict(
        output_dir=str(checkpoints),
        per_device_train_batch_size=per_device_batch(
            p.batch_size, training_processes().num_processes
        ),
        gradient_accumulation_steps=p.gradient_accumulation_steps,
        learning_rate=p.learning_rate,
        num_train_epochs=p.num_train_epochs,
        max_steps=p.max_steps,
        logging_steps=1,
        save_strategy="steps",
        save_steps=p.save_steps,
        save_total_limit=1,
        seed=seed,
        report_to=[],
        use_cpu=not on_gpu,
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        disable_tqdm=True,
        dataloader_num_workers=0,
        # TRL's default, under the name transformers 5 reads (no FutureWarning)
        activation_checkpointing=True,
    )


def run_loss(log_history: list[dict], trainer_loss: float, resumed: bool) -> float:
    """The run's mean training loss. The trainer's own average covers only the steps run in this
    call; after a resume (possibly from the last checkpoint, with no step left) use the logged
    per-step losses, which the checkpoint carries from before the resume."""
    losses = [h["loss"] for h in log_history if "loss" in h]
    return round(float(np.mean(losses)), 6) if resumed and losses else round(trainer_loss, 6)


class _WholeRunLoss(TrainerCallback):
    """Placed before the MLflow callback: the final `train_loss` it logs is the whole run's
    (`run_loss`), not the average over the steps this call ran after a resume (0.0 when none were
    left)."""

    resumed = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.resumed = state.global_step > 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "train_loss" in logs:
            logs["train_loss"] = run_loss(state.log_history, logs["train_loss"], self.resumed)


def anchor_base_model(adapter_dir: Path) -> None:
    """Name the base model so that a copied or moved workspace loads its own, not the original's. A
    local base inside the workspace (the working directory: every stage runs at the root) is written
    into `adapter_config.json` relative to the root, so
    `AutoPeftModelForCausalLM.from_pretrained(adapter_dir)` run from the root loads this workspace's
    student (peft resolves the path against the working directory: from elsewhere use
    `load_adapted_model`); `base_model.json` adds the path from the adapter directory, which that
    loader follows from any working directory. A base outside the workspace (a shared model
    directory) is written absolute; a model id, as it is. Not a key in `adapter_config.json`: peft
    warns about every key it does not know ("upgrade PEFT")."""
    config_path = adapter_dir / ADAPTER_CONFIG
    config = json.loads(config_path.read_text())
    given = config.get("base_model_name_or_path")
    if not given:
        return
    base, root, record = (
        Path(os.path.abspath(given)),
        Path.cwd(),
        {"base_model_name_or_path": given},
    )
    if Path(given).exists():
        inside = base.is_relative_to(root)
        record["base_model_name_or_path"] = str(base.relative_to(root)) if inside else str(base)
        if inside:
            record["from_adapter"] = os.path.relpath(base, os.path.abspath(adapter_dir))
    (adapter_dir / BASE_MODEL_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    if record["base_model_name_or_path"] != given:
        config["base_model_name_or_path"] = record["base_model_name_or_path"]
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True))


def base_model_path(adapter_dir: str | Path) -> str:
    """The base model of an adapter, from any working directory: the path from the adapter directory
    (`base_model.json`'s `from_adapter`: the student of the workspace the adapter is in, wherever it
    was copied or moved); else the path relative to the working directory (adapters written before
    that key name the absolute path of the checkout that trained them in `adapter_config.json`: from
    a copy's root, this finds the copy's own student); else `adapter_config.json`'s (that absolute
    path, a shared model directory, or a model id)."""
    adapter_dir = Path(adapter_dir)
    named = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    record_file = adapter_dir / BASE_MODEL_FILE
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    candidates = [adapter_dir / record["from_adapter"]] if "from_adapter" in record else []
    candidates += (
        [Path(record["base_model_name_or_path"])] if "base_model_name_or_path" in record else []
    )
    found = next((path for path in candidates if path.is_dir()), None)
    return os.path.normpath(found) if found else named


def load_adapted_model(adapter_dir: str | Path, **kwargs):
    """`AutoPeftModelForCausalLM.from_pretrained(adapter_dir)` on the base `base_model_path` finds:
    an adapter of any workspace, from any working directory. `kwargs` go to the base model's
    `from_pretrained` (e.g. `dtype`)."""
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(base_model_path(adapter_dir), **kwargs)
    return PeftModel.from_pretrained(base, str(adapter_dir))


def train_lora(
    base_model: str,
    records: list[dict],
    p: TrainParams,
    out_dir: str | Path,
    *,
    checkpoint_dir: str | Path,
    seed: int = 0,
    report: bool = True,
    model=None,
    tokenizer=None,
) -> dict:
    """Train one LoRA adapter on `records` (supervision records for sft, preference pairs for dpo)
    and save it.

    Checkpoints go to `checkpoint_dir`, outside the output (DVC clears a stage's outputs before
    running it) and keyed by the caller to the params and data, so a rerun resumes only the same
    run.

    Pass an already loaded `model`/`tokenizer` to train many adapters on one base load (micro-runs);
    the base weights are never changed, each call gets a fresh adapter. With `report`, the per-step
    curves and `train_loss` go to the active MLflow run (the caller logs no `train_loss` of its
    own). The result's `loss_curve` is every step's loss (`{"step", "loss"}`).
    """
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    out, model_given = Path(out_dir), model is not None
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(base_model)
    if model is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = AutoModelForCausalLM.from_pretrained(
            base_model, dtype=pick_dtype("auto", torch.device(device))
        )
    args = _common_args(p, Path(checkpoint_dir), seed)
    # in this order: see _WholeRunLoss
    callbacks = [_WholeRunLoss(), MLflowCallback()] if report else []
    if p.method == "sft":
        dataset = Dataset.from_list(to_text(records, tokenizer))
        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(**args, max_length=2048),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora_config(p),
            callbacks=callbacks,
        )
    else:
        dataset = Dataset.from_list(to_pairs(records, tokenizer))
        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(**args, beta=p.dpo_beta),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora_config(p),
            callbacks=callbacks,
        )
    last = get_last_checkpoint(args["output_dir"]) if Path(args["output_dir"]).is_dir() else None
    started = time.time()
    ended = (
        json.loads((Path(last) / "trainer_state.json").read_text())
        if last and p.max_steps > 0
        else None
    )
    if ended and ended["global_step"] >= p.max_steps:
        # the run had ended at this checkpoint: its weights are the adapter. Not trainer.train():
        # with `max_steps` inside an epoch, transformers resumes mid-epoch and runs one step past
        # the end (by epochs it runs none).
        log.info("the run had ended at %s: taking its adapter", last)
        set_peft_model_state_dict(
            trainer.model, load_file(Path(last) / "adapter_model.safetensors")
        )
        history, steps = ended["log_history"], ended["global_step"]
        train_loss = run_loss(history, 0.0, resumed=True)
        if report:
            # the run's `train_loss`, once, through the MLflow callback
            trainer.log({"train_loss": train_loss})
    else:
        if last:
            log.info("resuming from %s", last)
        result = trainer.train(resume_from_checkpoint=last)
        history, steps = trainer.state.log_history, trainer.state.global_step
        train_loss = run_loss(history, result.training_loss, resumed=bool(last))
    # adapter_model.safetensors + adapter_config.json, written once: under `accelerate launch` every
    # process takes part in gathering the weights (FSDP shards them), the main one writes
    acc = trainer.accelerator
    state_dict = acc.get_state_dict(trainer.model) if acc.num_processes > 1 else None
    if acc.is_main_process:
        trainer.model.save_pretrained(out, state_dict=state_dict)
        anchor_base_model(out)
    acc.wait_for_everyone()
    if model_given:
        # take the LoRA layers out again: a model passed in is left as it came
        trainer.model.unload()
    curve = [{"step": h["step"], "loss": h["loss"]} for h in history if "loss" in h]
    return {
        "method": p.method,
        "n_records": len(records),
        "train_loss": train_loss,
        "final_loss": curve[-1]["loss"] if curve else None,
        "steps": steps,
        "seconds": round(time.time() - started, 2),
        "resumed_from": last,
        "adapter_dir": str(out),
        "loss_curve": curve,
    }
