"""The student's reply ends the way its chat template ends an assistant turn, not with whatever the
tokenizer calls eos: Qwen3's `<|im_end|>` even on a checkpoint whose eos is `<|endoftext|>` (a base
model), the offline student's `<|end|>` (its eos, so its tokens are unchanged). Prompt + reply is
exactly the template's rendering of the finished turn, Qwen3's empty think block included, so a
candidate is scored (and trained) where the model would write it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

from teachable.envs.babyai import ACTIONS
from teachable.policy.hf import HFPolicy
from teachable.policy.prompts import (
    build_messages,
    completion_text,
    end_of_turn,
    render_prompt,
    reply_text,
    stop_token_ids,
)
from teachable.training.student.build import CHAT_TEMPLATE, train_tokenizer

# Qwen3's template for what the pipeline renders (system, user, a final assistant turn; no tools),
# as shipped: the assistant turn after the last user message gets a think block (empty here), every
# turn ends `<|im_end|>\n`, and with enable_thinking=False the generation prompt carries the empty
# think block.
QWEN3_STYLE = (
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' and loop.last %}"
    "{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n'"
    " + message.content + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)
THINK_OFF = "<|im_start|>assistant\n<think>\n\n</think>\n\n"
ACTIONS_SEEN = [
    *ACTIONS,
    "click[walnut chair]",
    "search[red mug]",
    'get_order_details(order_id="#W1")',
]


def shipped_template(name: str) -> str | None:
    """A chat template as the model ships it, from TRL's copies (trl/chat_templates, kept identical
    to the Hub's)."""
    try:
        import trl
    except ImportError:
        return None
    path = Path(trl.__file__).parent / "chat_templates" / f"{name}.jinja"
    return path.read_text() if path.is_file() else None


TEMPLATES = {
    "qwen3-style": QWEN3_STYLE,
    "qwen3": shipped_template("qwen3"),
    "qwen3-instruct-2507": shipped_template("qwen3_instruct_2507"),
}


def messages() -> list[dict]:
    return build_messages(
        "go to the red ball",
        "You see: red ball 2 forward.",
        ACTIONS,
        [{"obs": "x", "action": "turn left"}],
    )


@pytest.fixture(scope="module")
def qwen_vocab() -> Tokenizer:
    """A small byte-level BPE with Qwen's special tokens (`<think>` / `</think>` added as Qwen's
    are)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = [m["content"] for m in messages()] + ACTIONS_SEEN
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tok.add_tokens([AddedToken(t, normalized=False) for t in ("<think>", "</think>")])
    return tok


def qwen_tokenizer(
    vocab: Tokenizer, template: str, eos: str = "<|endoftext|>", pad: str | None = "<|endoftext|>"
) -> PreTrainedTokenizerFast:
    """Qwen3 base checkpoints: eos = pad = `<|endoftext|>`; post-trained ones: eos `<|im_end|>`, pad
    `<|endoftext|>`."""
    kwargs = {"pad_token": pad} if pad else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=vocab, eos_token=eos, chat_template=template, **kwargs
    )


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_qwen3_end_of_turn_is_im_end_whatever_the_eos(qwen_vocab, name):
    if TEMPLATES[name] is None:
        pytest.skip(f"TRL's copy of {name}'s template is not installed")
    for eos in ("<|endoftext|>", "<|im_end|>"):
        tokenizer = qwen_tokenizer(qwen_vocab, TEMPLATES[name], eos=eos)
        assert end_of_turn(tokenizer) == "<|im_end|>"
        assert completion_text(tokenizer, "go forward") == "go forward<|im_end|>"


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_prompt_and_reply_are_the_rendered_turn(qwen_vocab, name):
    """render_prompt + completion_text == the template's finished exchange (less its last newline):
    Qwen3's prompt ends with the empty think block, and the reply is scored right after it."""
    if TEMPLATES[name] is None:
        pytest.skip(f"TRL's copy of {name}'s template is not installed")
    tokenizer = qwen_tokenizer(qwen_vocab, TEMPLATES[name])
    if "enable_thinking" in TEMPLATES[name]:
        assert render_prompt(tokenizer, messages()).endswith(THINK_OFF)
    for action in ACTIONS_SEEN:
        turn = tokenizer.apply_chat_template(
            messages() + [{"role": "assistant", "content": reply_text(action)}],
            tokenize=False,
            enable_thinking=False,
        )
        assert render_prompt(tokenizer, messages()) + completion_text(
            tokenizer, action
        ) == turn.removesuffix("\n")


def test_im_end_is_one_token_at_the_end_of_a_candidate(qwen_vocab):
    tokenizer = qwen_tokenizer(qwen_vocab, QWEN3_STYLE)
    ids = tokenizer(completion_text(tokenizer, "pick up"), add_special_tokens=False).input_ids
    assert ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    # the base checkpoint's <|endoftext|> is not part of the reply
    assert tokenizer.eos_token_id not in ids


def test_offline_student_tokens_unchanged():
    """The offline student's template ends a turn with `<|end|>`, its eos: byte-identical text and
    the same ids."""
    texts = [m["content"] for m in messages()] + ACTIONS_SEEN
    tokenizer = train_tokenizer(texts, 400)
    assert tokenizer.chat_template == CHAT_TEMPLATE and tokenizer.eos_token == "<|end|>"
    assert end_of_turn(tokenizer) == "<|end|>"
    for action in ACTIONS_SEEN:
        before = reply_text(action) + tokenizer.eos_token  # what completion_text wrote until now
        assert completion_text(tokenizer, action) == before
        assert (
            tokenizer(completion_text(tokenizer, action), add_special_tokens=False).input_ids
            == tokenizer(before, add_special_tokens=False).input_ids
        )


@pytest.mark.parametrize(
    "template",
    [
        None,  # no template at all
        # a template that refuses the exchange
        "{{ raise_exception('a system turn first') }}",
        "{% for m in messages %}{{ m['content'] }}{% endfor %}",  # nothing after the reply
        "{% for m in messages %}{{ m['content'] }}\n{% endfor %}",  # only a newline after it
    ],
)
def test_falls_back_to_eos(qwen_vocab, template):
    tokenizer = qwen_tokenizer(qwen_vocab, template)
    assert end_of_turn(tokenizer) == "<|endoftext|>"
    assert completion_text(tokenizer, "drop") == "drop<|endoftext|>"


def test_cache_follows_the_template(qwen_vocab):
    tokenizer = qwen_tokenizer(qwen_vocab, None)
    assert end_of_turn(tokenizer) == "<|endoftext|>"
    tokenizer.chat_template = QWEN3_STYLE
    assert end_of_turn(tokenizer) == "<|im_end|>"
    tokenizer.chat_template = CHAT_TEMPLATE.replace("<|end|>", "<|endoftext|>")
    assert end_of_turn(tokenizer) == "<|endoftext|>"


def tiny_model(tokenizer) -> Qwen3ForCausalLM:
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        intermediate_size=64,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    return Qwen3ForCausalLM(config).eval()


def test_hf_policy_keeps_qwen_pad_and_pads_left(qwen_vocab):
    """A post-trained Qwen3 tokenizer (eos `<|im_end|>`, pad `<|endoftext|>`): HFPolicy keeps the
    pad token distinct from eos, pads on the left, and its batched scores of `...<|im_end|>` replies
    match one forward per candidate."""
    tokenizer = qwen_tokenizer(qwen_vocab, QWEN3_STYLE, eos="<|im_end|>", pad="<|endoftext|>")
    policy = HFPolicy(tiny_model(tokenizer), tokenizer, batch_size=4)
    assert tokenizer.pad_token == "<|endoftext|>" != tokenizer.eos_token
    assert tokenizer.padding_side == "left"
    # unequal prompt lengths
    states = [messages(), build_messages("pick up a key", "You see nothing.", ACTIONS)]
    scores = policy.score(states, [ACTIONS, ACTIONS[:3]])
    for state, cands, got in zip(states, [ACTIONS, ACTIONS[:3]], scores):
        np.testing.assert_allclose(
            got.logliks, policy.score_naive(state, cands), rtol=1e-4, atol=1e-4
        )


def test_hf_policy_pads_with_eos_only_without_a_pad_token(qwen_vocab):
    tokenizer = qwen_tokenizer(qwen_vocab, QWEN3_STYLE, eos="<|im_end|>", pad=None)
    assert tokenizer.pad_token is None
    HFPolicy(tiny_model(tokenizer), tokenizer)
    assert tokenizer.pad_token == "<|im_end|>"


def test_generation_stops_at_the_end_of_turn_of_a_base_checkpoint(qwen_vocab):
    """A base checkpoint's eos is `<|endoftext|>`: generation also stops at `<|im_end|>`, the
    reply's end; the offline student's end of turn is its eos, one stop id."""
    tokenizer = qwen_tokenizer(qwen_vocab, QWEN3_STYLE)
    stops = HFPolicy(tiny_model(tokenizer), tokenizer)._stop_ids()
    assert stops == [
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
        tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    ]
    # what the server engines are sent too (teachable/policy/server.py)
    assert stop_token_ids(tokenizer) == stops
    student = train_tokenizer([m["content"] for m in messages()] + ACTIONS_SEEN, 400)
    assert HFPolicy(tiny_model(student), student)._stop_ids() == [student.eos_token_id]
