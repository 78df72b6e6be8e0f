"""LoRA training through TRL, in the style of TRL's own peft test: adapters change, base weights do
not."""

import warnings

import numpy as np
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from teachable.core.params import TrainParams
from teachable.policy.hf import HFPolicy
from teachable.training.supervision import (
    EXAMPLE_LABELED,
    preference_pair,
    supervision_record,
)
from teachable.training.lora import train_lora

# the example record with a hint, so that the hint format differs from demo
LABELED = {
    **EXAMPLE_LABELED,
    "teacher": {
        **EXAMPLE_LABELED["teacher"],
        "hint": "The red ball you need is 2 forward from you.",
    },
}


def test_supervision_formats_share_the_prompt_and_differ_by_the_patch():
    demo, hint, contrast = (supervision_record(LABELED, f) for f in ("demo", "hint", "contrast"))
    assert demo["action"] == hint["action"] == contrast["action"] == "go forward"
    text = lambda r: r["messages"][-1]["content"]
    assert "Teacher" not in text(demo)
    assert (
        "The red ball you need is 2 forward" in text(hint)
        and "go forward" not in text(hint).split("Teacher")[1]
    )
    assert "'turn left' is a mistake here; do 'go forward' instead." in text(contrast)
    pair = preference_pair(LABELED)
    assert (pair["chosen"], pair["rejected"]) == ("go forward", "turn left")
    with pytest.raises(ValueError, match="unknown supervision format"):
        supervision_record(LABELED, "lecture")


def expert_prob(model, tokenizer, record):
    policy = HFPolicy(model.eval(), tokenizer)
    (scores,) = policy.score([record["messages"]], [LABELED["valid_actions"]])
    return scores.probs[LABELED["valid_actions"].index("go forward")]


@pytest.mark.heavy
def test_lora_changes_adapters_not_base_and_raises_the_expert_action(tiny_student_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_student_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_student_dir)
    record = supervision_record(LABELED, "demo")
    before_base = {k: v.clone() for k, v in model.state_dict().items()}
    p_before = expert_prob(model, tokenizer, record)
    # A random tiny model has near-flat logits; adapters on the MLP too let 30 steps move them.
    # 0.1 overshoots on the Qwen3 student
    params = TrainParams.defaults(
        max_steps=30,
        learning_rate=0.03,
        batch_size=1,
        target_modules=["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"],
    )
    metrics = train_lora(
        str(tiny_student_dir),
        [record],
        params,
        tmp_path / "adapter",
        report=False,
        checkpoint_dir=tmp_path / "ckpt",
    )
    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    # lora_B starts at zero
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())
    assert metrics["steps"] == 30 and np.isfinite(metrics["train_loss"])

    trained = AutoModelForCausalLM.from_pretrained(tiny_student_dir)
    trained.load_adapter(str(tmp_path / "adapter"))
    p_after = expert_prob(trained, tokenizer, record)
    # at least e times more likely
    assert np.log(p_after) - np.log(p_before) > 1.0, (p_before, p_after)
    after_base = AutoModelForCausalLM.from_pretrained(tiny_student_dir).state_dict()
    assert all(torch.equal(before_base[k], after_base[k]) for k in before_base)


@pytest.mark.heavy
def test_a_model_passed_in_comes_back_unchanged(tiny_student_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_student_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_student_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = TrainParams.defaults(max_steps=3, batch_size=1)
    train_lora(
        "unused",
        [supervision_record(LABELED, "hint")],
        params,
        tmp_path / "a",
        report=False,
        model=model,
        tokenizer=tokenizer,
        checkpoint_dir=tmp_path / "ckpt",
    )
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.heavy
def test_a_killed_run_resumes_from_its_last_checkpoint(tiny_student_dir, tmp_path):
    record = supervision_record(LABELED, "contrast")
    four, six = (TrainParams.defaults(max_steps=n, save_steps=2, batch_size=1) for n in (4, 6))
    first = train_lora(
        str(tiny_student_dir),
        [record],
        four,
        tmp_path / "run",
        report=False,
        checkpoint_dir=tmp_path / "ckpt",
    )
    assert first["resumed_from"] is None
    again = train_lora(
        str(tiny_student_dir),
        [record],
        six,
        tmp_path / "run",
        report=False,
        checkpoint_dir=tmp_path / "ckpt",
    )
    assert again["resumed_from"].endswith("checkpoint-4") and again["steps"] == 6
    finished = train_lora(
        str(tiny_student_dir),
        [record],
        six,
        tmp_path / "run",
        report=False,
        checkpoint_dir=tmp_path / "ckpt",
    )
    # resumed from its last checkpoint with no step left: the loss is the run's, not the empty
    # resume's 0.0
    assert finished["resumed_from"].endswith("checkpoint-6") and finished["train_loss"] > 0


@pytest.mark.heavy
def test_a_dpo_step_runs_on_contrast_pairs(tiny_student_dir, tmp_path):
    params = TrainParams.defaults(method="dpo", max_steps=2, batch_size=1)
    metrics = train_lora(
        str(tiny_student_dir),
        [preference_pair(LABELED)],
        params,
        tmp_path / "dpo",
        report=False,
        checkpoint_dir=tmp_path / "ckpt",
    )
    assert metrics["steps"] == 2 and np.isfinite(metrics["train_loss"])
    assert (tmp_path / "dpo" / "adapter_model.safetensors").exists()


@pytest.mark.heavy
def test_training_and_adapter_loading_raise_no_future_warning(tiny_student_dir, tmp_path):
    """The pilot's log once held 137 FutureWarning lines per stage: TRL's default
    `gradient_checkpointing` (the name transformers 5 deprecates) and peft 0.21 asking the model
    `is_gradient_checkpointing`. Fixed at the source (the new name in our config; peft >= 0.22), so
    any FutureWarning here is a new one to fix."""
    record = supervision_record(LABELED, "demo")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        train_lora(
            str(tiny_student_dir),
            [record],
            TrainParams.defaults(max_steps=1, batch_size=1),
            tmp_path / "adapter",
            report=False,
            checkpoint_dir=tmp_path / "ckpt",
        )
        PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(tiny_student_dir), tmp_path / "adapter"
        )
