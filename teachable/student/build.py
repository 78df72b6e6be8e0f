"""Build the offline student: a local BPE tokenizer, a small Qwen3 decoder from a config, behaviour cloning with
TRL's SFTTrainer until held-out success reaches the target, then a normal HF directory (safetensors, tokenizer,
chat template) that every later stage loads like any downloaded model.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from datasets import Dataset
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM, TrainerCallback
from trl import SFTConfig, SFTTrainer

from teachable.config import EnvParams, StudentParams
from teachable.envs import tokenizer_words
from teachable.policy.hf import HFPolicy
from teachable.policy.prompts import completion_text, render_prompt
from teachable.rollout import RolloutEngine, RolloutSpec
from teachable.student.data import demonstrations
from teachable.tasks import Task, make_tasks

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def train_tokenizer(texts: list[str], vocab_size: int, words: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on the environment's own text (prompts and actions). `words` (the environment's
    `tokenizer_words`, e.g. the shop's product ids) become whole tokens on top of the BPE vocabulary.

    A word right after `[` is encoded as if a space preceded it (and decoded back without one), so `walnut` in
    `click[walnut]` or `search[walnut chair]` is the same token as in the mission's "with walnut": choosing an
    option or writing a query is then copying tokens, not learning a second spelling of every word."""
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


def build_model(params: StudentParams, tokenizer: PreTrainedTokenizerFast, seed: int) -> Qwen3ForCausalLM:
    """Qwen3's architecture (the family of the seeds' Qwen3-8B) at a CPU-sized shape. Not Qwen2: transformers
    reloads a `qwen2` directory with Qwen2's own pre-tokenizer, not the saved one, so later stages would see other
    tokens than the student was trained on; a `qwen3` directory reloads the saved tokenizer as it is."""
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=params.hidden_size,
        num_hidden_layers=params.num_layers,
        num_attention_heads=params.num_heads,
        num_key_value_heads=params.num_heads,
        head_dim=params.hidden_size // params.num_heads,
        intermediate_size=params.intermediate_size,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    return Qwen3ForCausalLM(config)


def held_out_success(policy: HFPolicy, tasks: list[Task], env: EnvParams, temperature: float, seed: int) -> float:
    engine = RolloutEngine(policy, env.name, env.max_steps, env.history_len, temperature, record_steps=False)
    specs = [RolloutSpec(t.task_id, t.level, t.seed, sample_seed=seed + i) for i, t in enumerate(tasks)]
    episodes = engine.run(specs)
    return sum(e.success for e in episodes) / len(episodes)


@dataclass
class _SuccessStop(TrainerCallback):
    """Every `every` steps: held-out success with the rollout engine; stop once it reaches the target."""

    policy: HFPolicy
    tasks: list[Task]
    env: EnvParams
    params: StudentParams
    seed: int
    curve: list[dict] = field(default_factory=list)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.params.eval_every:
            return control
        self.policy.model.eval()
        success = held_out_success(self.policy, self.tasks, self.env, self.params.eval_temperature, self.seed)
        self.policy.model.train()
        self.curve.append({"step": state.global_step, "held_out_success": success})
        log.info("step %d: held-out success %.3f", state.global_step, success)
        if success >= self.params.target_success:
            control.should_training_stop = True
        return control


def build_student(params: StudentParams, env: EnvParams, seed: int, out_dir: str | Path) -> dict:
    """Build, train and save the offline student; returns its card (also written as card.json by the stage)."""
    started = time.time()
    datasets.disable_progress_bars()
    train_tasks = make_tasks(env.levels, params.n_train_tasks * len(env.levels), "student_train")
    examples = demonstrations(
        env.name, train_tasks, env.max_steps, env.history_len, params.noise, params.patch_rates, seed
    )
    log.info("%d behaviour-cloning examples from %d expert episodes", len(examples), len(train_tasks))

    sample = [m["content"] for ex in examples[:20000] for m in ex["messages"]] + [ex["action"] for ex in examples]
    tokenizer = train_tokenizer(sample, params.vocab_size, tokenizer_words(env.name))
    records = [
        {"prompt": render_prompt(tokenizer, ex["messages"]), "completion": completion_text(tokenizer, ex["action"])}
        for ex in examples
    ]
    model = build_model(params, tokenizer, seed)
    n_params = sum(p.numel() for p in model.parameters())

    eval_tasks = make_tasks(env.levels, params.n_eval_tasks, "student_eval")
    on_cpu = not torch.cuda.is_available()
    policy = HFPolicy(model, tokenizer, name="offline-student", batch_size=params.score_batch_size)
    stopper = _SuccessStop(policy, eval_tasks, env, params, seed)
    with tempfile.TemporaryDirectory() as scratch:
        config = SFTConfig(
            output_dir=scratch,
            per_device_train_batch_size=params.batch_size,
            learning_rate=params.learning_rate,
            lr_scheduler_type="constant",
            max_steps=params.max_train_steps,
            logging_steps=10,
            save_strategy="no",
            report_to=[],
            seed=seed,
            use_cpu=on_cpu,
            bf16=False,
            dataloader_num_workers=0,
            max_length=1024,
            disable_tqdm=True,
        )
        trainer = SFTTrainer(
            model=model, args=config, train_dataset=Dataset.from_list(records), processing_class=tokenizer,
            callbacks=[stopper],
        )
        trainer.train()
        losses = [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h]
        steps_done = trainer.state.global_step

    model.eval()
    if not stopper.curve or stopper.curve[-1]["step"] != steps_done:
        success = held_out_success(policy, eval_tasks, env, params.eval_temperature, seed)
        stopper.curve.append({"step": steps_done, "held_out_success": success})
    success = stopper.curve[-1]["held_out_success"]
    lo, hi = params.success_band
    if not lo <= success <= hi:
        log.warning("held-out success %.3f is outside the band [%.2f, %.2f]", success, lo, hi)

    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)  # safetensors
    tokenizer.save_pretrained(out_dir)  # tokenizer.json + chat template
    return {
        "levels": env.levels,
        "n_examples": len(examples),
        "n_parameters": n_params,
        "vocab_size": len(tokenizer),
        "train_steps": steps_done,
        "loss_curve": losses,
        "success_curve": stopper.curve,
        "held_out_success": success,
        "eval_temperature": params.eval_temperature,
        "success_band": list(params.success_band),
        "in_band": bool(lo <= success <= hi),
        "build_seconds": round(time.time() - started, 1),
        "params": params.model_dump(mode="json"),
    }

