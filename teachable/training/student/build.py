"""Build the offline student: a local BPE tokenizer, a small Qwen3 decoder from a config, behaviour
cloning with TRL's SFTTrainer until held-out success reaches the target, then a normal HF directory
(safetensors, tokenizer, chat template) that every later stage loads like any downloaded model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from datasets import Dataset
from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM, TrainerCallback
from trl import SFTConfig

from teachable.core.params import EnvParams, StudentParams
from teachable.envs import tokenizer_words
from teachable.policy.hf import HFPolicy
from teachable.policy.prompts import completion_text, render_prompt
from teachable.rollout.engine import RolloutEngine, RolloutSpec
from teachable.core.resume import remove_scratch, scratch_path
from teachable.training.student.batching import LengthGroupsSFTTrainer
from teachable.training.student.data import demonstrations
from teachable.core.tasks import Task, make_tasks

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def train_tokenizer(
    texts: list[str], vocab_size: int, words: list[str] | None = None
) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on the environment's own text (prompts and actions). `words` (the
    environment's `tokenizer_words`, e.g. the shop's product ids) become whole tokens on top of the
    BPE vocabulary.

    A word right after `[` is encoded as if a space preceded it (and decoded back without one), so
    `walnut` in `click[walnut]` or `search[walnut chair]` is the same token as in the mission's
    "with walnut": choosing an option or writing a query is then copying tokens, not learning a
    second spelling of every word."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Replace("[", "[ ")
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace("[ ", "[")])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    if words:
        tok.add_tokens([AddedToken(w, normalized=False) for w in words])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        eos_token="<|end|>",
        additional_special_tokens=SPECIAL_TOKENS[2:],
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
    )


def check_lengths(tokenizer: PreTrainedTokenizerFast, records: list[dict], max_length: int) -> int:
    """The longest example in tokens; one longer than the context is an error, since the trainer
    would cut its end, which is the action being taught."""
    lengths = [
        len(ids) for ids in tokenizer([r["prompt"] + r["completion"] for r in records]).input_ids
    ]
    longest = max(lengths, default=0)
    log.info(
        "examples: %d tokens on average, %d at most", sum(lengths) // max(1, len(lengths)), longest
    )
    if longest > max_length:
        raise ValueError(
            f"{sum(n > max_length for n in lengths)} behaviour-cloning examples are longer than "
            f"student.max_length={max_length} tokens (longest {longest}); raise student.max_length"
        )
    return longest


def build_model(
    params: StudentParams, tokenizer: PreTrainedTokenizerFast, seed: int
) -> Qwen3ForCausalLM:
    """Qwen3's architecture (the family of the seeds' Qwen3-8B) at a CPU-sized shape. Not Qwen2:
    transformers reloads a `qwen2` directory with Qwen2's own pre-tokenizer, not the saved one, so
    later stages would see other tokens than the student was trained on; a `qwen3` directory reloads
    the saved tokenizer as it is."""
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=params.hidden_size,
        num_hidden_layers=params.num_layers,
        num_attention_heads=params.num_heads,
        num_key_value_heads=params.num_heads,
        head_dim=params.hidden_size // params.num_heads,
        intermediate_size=params.intermediate_size,
        max_position_embeddings=params.max_length,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    return Qwen3ForCausalLM(config)


def held_out_success(
    policy: HFPolicy, tasks: list[Task], env: EnvParams, temperature: float, seed: int
) -> float:
    engine = RolloutEngine(
        policy, env.name, env.max_steps, env.history_len, temperature, record_steps=False
    )
    specs = [
        RolloutSpec(t.task_id, t.level, t.seed, sample_seed=seed + i) for i, t in enumerate(tasks)
    ]
    episodes = engine.run(specs)
    return sum(e.success for e in episodes) / len(episodes)


@dataclass
class _SuccessStop(TrainerCallback):
    """Every `every` steps: held-out success with the rollout engine; stop once it reaches the
    target.

    Each result goes into the trainer's own `log_history` (`{"step", "held_out_success"}`), which
    every checkpoint saves and a resumed run restores, so the curve of a resumed build is the same
    as an uninterrupted one's."""

    policy: HFPolicy
    tasks: list[Task]
    env: EnvParams
    params: StudentParams
    seed: int

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.params.eval_every:
            return control
        self.policy.model.eval()
        success = held_out_success(
            self.policy, self.tasks, self.env, self.params.eval_temperature, self.seed
        )
        self.policy.model.train()
        state.log_history.append({"step": state.global_step, "held_out_success": success})
        log.info("step %d: held-out success %.3f", state.global_step, success)
        if success >= self.params.target_success:
            control.should_training_stop = True
        return control


def success_curve(log_history: list[dict]) -> list[dict]:
    return [
        {"step": h["step"], "held_out_success": h["held_out_success"]}
        for h in log_history
        if "held_out_success" in h
    ]


def loss_curve(log_history: list[dict]) -> list[dict]:
    return [{"step": h["step"], "loss": h["loss"]} for h in log_history if "loss" in h]


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def last_checkpoint(folder: Path) -> tuple[Path, dict] | None:
    """The newest complete checkpoint and its trainer state. The trainer writes `trainer_state.json`
    last, so a checkpoint a kill cut short (no state, or a torn one) is skipped for the one before
    it."""
    if not folder.is_dir():
        return None
    steps = sorted(
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))
    )
    for _, path in reversed(steps):
        with contextlib.suppress(OSError, ValueError):
            return path, json.loads((path / "trainer_state.json").read_text())
    return None


def finished(state: dict, params: StudentParams) -> bool:
    """Whether training had already ended at this checkpoint: the step limit, or the target reached
    (the stop is decided at an evaluation step, and every evaluation step is a checkpoint)."""
    curve = success_curve(state["log_history"])
    reached = (
        bool(curve)
        and curve[-1]["step"] == state["global_step"]
        and curve[-1]["held_out_success"] >= params.target_success
    )
    return state["global_step"] >= params.max_train_steps or reached


def build_student(
    params: StudentParams,
    env: EnvParams,
    seed: int,
    out_dir: str | Path,
    scratch_key: dict | None = None,
) -> dict:
    """Build, train and save the offline student; returns its card (also written as card.json by the
    stage).

    With `scratch_key` (the stage's params), training checkpoints go to a scratch directory keyed by
    it and by the training data and tokenizer (`teachable.resume.scratch_path`), one at every
    held-out evaluation, so a killed build restarted with the same params and data resumes from its
    last checkpoint; weights, data order, optimizer and RNG state come back with it, so on a CPU the
    saved model is byte for byte the one an uninterrupted build makes (tests/test_model_faults.py;
    on a GPU, nondeterministic kernels make two uninterrupted builds differ in the last bits
    already). A build killed after it had ended (step limit, or target reached at an evaluation)
    takes the last checkpoint's weights as they are. The checkpoints are removed once the model is
    saved. Without `scratch_key`, a temporary directory: no resuming."""
    started = time.time()
    datasets.disable_progress_bars()
    train_tasks = make_tasks(env.levels, params.n_train_tasks * len(env.levels), "student_train")
    examples = demonstrations(
        env.name,
        train_tasks,
        env.max_steps,
        env.history_len,
        params.noise,
        params.patch_rates,
        seed,
    )
    log.info(
        "%d behaviour-cloning examples from %d expert episodes", len(examples), len(train_tasks)
    )

    sample = [m["content"] for ex in examples[:20000] for m in ex["messages"]] + [
        ex["action"] for ex in examples
    ]
    tokenizer = train_tokenizer(sample, params.vocab_size, tokenizer_words(env.name))
    records = [
        {
            "prompt": render_prompt(tokenizer, ex["messages"]),
            "completion": completion_text(tokenizer, ex["action"]),
        }
        for ex in examples
    ]
    check_lengths(tokenizer, records, params.max_length)
    eval_tasks = make_tasks(env.levels, params.n_eval_tasks, "student_eval")
    with contextlib.ExitStack() as stack:
        if scratch_key is None:
            checkpoints = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        else:
            key = {
                **scratch_key,
                "records": digest(records),
                "tokenizer": digest(tokenizer.backend_tokenizer.to_str()),
            }
            checkpoints = scratch_path("checkpoints-student", key)
        found = last_checkpoint(checkpoints)
        resumed_from = found[1]["global_step"] if found else None
        if found and finished(found[1], params):
            log.info("training had ended at %s: its weights are the student", found[0])
            # where the trainer would have left it
            device = "cuda" if torch.cuda.is_available() else "cpu"
            model = Qwen3ForCausalLM.from_pretrained(found[0]).to(device)
            history, steps_done = found[1]["log_history"], found[1]["global_step"]
        else:
            if found:
                log.info("resuming from %s", found[0])
            model = build_model(params, tokenizer, seed)
            history, steps_done = train(
                model,
                tokenizer,
                records,
                eval_tasks,
                env,
                params,
                seed,
                checkpoints,
                found[0] if found else None,
            )
        n_params = sum(p.numel() for p in model.parameters())
        model.eval()
        policy = HFPolicy(
            model, tokenizer, name="offline-student", batch_size=params.score_batch_size
        )
        curve = success_curve(history)
        if not curve or curve[-1]["step"] != steps_done:
            curve.append(
                {
                    "step": steps_done,
                    "held_out_success": held_out_success(
                        policy, eval_tasks, env, params.eval_temperature, seed
                    ),
                }
            )
        success = curve[-1]["held_out_success"]
        lo, hi = params.success_band
        if not lo <= success <= hi:
            log.warning("held-out success %.3f is outside the band [%.2f, %.2f]", success, lo, hi)

        out_dir = Path(out_dir)
        model.save_pretrained(out_dir)  # safetensors
        tokenizer.save_pretrained(out_dir)  # tokenizer.json + chat template
        if scratch_key is None:
            shutil.rmtree(checkpoints, ignore_errors=True)
        else:
            remove_scratch(checkpoints)  # and its lock (`teachable.core.resume.hold`)
    return {
        "levels": env.levels,
        "n_examples": len(examples),
        "n_parameters": n_params,
        "vocab_size": len(tokenizer),
        "train_steps": steps_done,
        "loss_curve": loss_curve(history),
        "success_curve": curve,
        "held_out_success": success,
        "eval_temperature": params.eval_temperature,
        "success_band": list(params.success_band),
        "in_band": bool(lo <= success <= hi),
        "resumed_from_step": resumed_from,
        "build_seconds": round(time.time() - started, 1),
        "params": params.model_dump(mode="json"),
    }


def train(
    model: Qwen3ForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    records: list[dict],
    eval_tasks: list[Task],
    env: EnvParams,
    params: StudentParams,
    seed: int,
    checkpoints: Path,
    resume: Path | None,
) -> tuple[list[dict], int]:
    """Behaviour cloning with SFTTrainer until held-out success reaches the target (or the step
    limit), a checkpoint at every evaluation; returns the trainer's log history (losses, held-out
    successes) and the steps done."""
    policy = HFPolicy(model, tokenizer, name="offline-student", batch_size=params.score_batch_size)
    config = SFTConfig(
        output_dir=str(checkpoints),
        per_device_train_batch_size=params.batch_size,
        learning_rate=params.learning_rate,
        lr_scheduler_type="constant",
        max_steps=params.max_train_steps,
        # a loss every 10 steps, on a grid the checkpoints fall on, so a resumed run logs the same
        # averages
        logging_steps=math.gcd(10, params.eval_every),
        save_strategy="steps",
        save_steps=params.eval_every,  # a checkpoint at every held-out evaluation (and at the end)
        save_total_limit=1,
        report_to=[],
        seed=seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        dataloader_num_workers=0,
        max_length=params.max_length,
        train_sampling_strategy="group_by_length" if params.group_by_length else "random",
        disable_tqdm=True,
        # TRL's default, under the name transformers 5 reads (no FutureWarning)
        activation_checkpointing=True,
    )
    trainer = LengthGroupsSFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(records),
        processing_class=tokenizer,
        callbacks=[_SuccessStop(policy, eval_tasks, env, params, seed)],
        shuffle_length_groups=params.shuffle_length_groups,
    )
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return trainer.state.log_history, trainer.state.global_step
