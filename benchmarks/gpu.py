"""The GPU check: a student of Qwen3-8B's shape built from its config (bf16, random weights: nothing
downloaded), scoring states with the `hf` backend (`HFPolicy.score` itself) and taking LoRA SFT
steps of the matrix recipe. Prints a table and writes JSON. Within 8 minutes on one H100/H200
(`--budget-s`, each phase stops at its share).

    python benchmarks/gpu.py [--out benchmarks/gpu.json] [--env babyai] \
        [--batches 32 64 128 256 512 1024]
    python benchmarks/gpu.py --tiny        # a tiny config on the CPU: the mechanics, in seconds

Goal (the issue): scoring >= 40% MFU, LoRA step >= 35% MFU.

Workload. A state is a prompt of the env's size and its candidates (benchmarks/throughput.json
`env_tokens`, counted in the offline student's tokens; BabyAI: 100 prompt tokens, 6 candidates of 3
tokens, end-of-turn included; `--prompt-tokens` for another size). No Qwen tokenizer can be
downloaded, so the tokenizer is a WordLevel one over numbered words (`w17`), one token a word, with
Qwen3's vocabulary size and its `<|im_end|>` / `<|endoftext|>` (eos / pad); prompts are random
words. The timed call is `HFPolicy.score`: chat template, tokenizer, the prompt pass, the candidate
pass. A LoRA step is the recipe of params.yaml `train` (`lora.lora_config`: r, alpha, dropout,
target modules; `batch_size` records a step) on random records of prompt + one candidate, as TRL's
SFTTrainer runs it on a GPU (bf16 weights, bf16 autocast, fp32 adapters, loss on the completion,
fused AdamW, gradient clipping at 1), without the trainer's data loading and padding.

MFU = model FLOPs / seconds / peak bf16 dense FLOP/s (H100 SXM and H200: 989 TFLOP/s; H100 PCIe 756,
H100 NVL 835; other devices and the CPU: a measured large bf16 / fp32 matmul, `--peak-tflops` to set
it). FLOPs are those of the tokens that must be computed, by the cost model the planner prices runs
with (teachable/plan/flops.py: N the decoder layers' weight matrices, the lm_head only where logits
are computed, causal attention): scoring a state as `HFPolicy.score` runs it (the prompt once, its
KV cache shared by the candidates); a LoRA step B (4 N S + 4 d V c + 3 A + 6 M S). `mfu_all_logits`
also counts lm_head on every position, which transformers computes (TRL's loss then masks the
prompt's). `python -m teachable plan --calibrate benchmarks/gpu.json` folds the measured MFUs into
benchmarks/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

from teachable.core.params import TrainParams, load_params
from teachable.policy.hf import HFPolicy
from teachable.plan import flops
from teachable.plan.flops import Shape, lora_flops, scoring_flops
from teachable.plan.planner import env_tokens

# Qwen3-8B's config.json (huggingface.co/Qwen/Qwen3-8B), the planner's shape
# (teachable/plan/flops.py) with RoPE theta 1e6. 8.19e9 parameters, 6.95e9 of them in the decoder
# layers (N).
QWEN3_8B = dict(
    flops.QWEN3_8B,
    max_position_embeddings=40960,
    rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
)
TINY = dict(
    QWEN3_8B,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=128,
    vocab_size=2048,
    max_position_embeddings=1024,
)
# dense, NVIDIA's data sheets; first match of the name wins
PEAK_BF16_TFLOPS = (
    ("H200 NVL", 835.0),
    ("H200", 989.0),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("A100", 312.0),
)
GOALS = {"scoring_mfu": 0.40, "lora_mfu": 0.35}
EOS, PAD, UNK = "<|im_end|>", "<|endoftext|>", "<unk>"
# one turn: words + <|im_end|>
CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}<|im_end|>\n{% endfor %}"


def word_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """One token a word (`w0`, `w1`, ...), `vocab_size` tokens in all, eos `<|im_end|>` and pad
    `<|endoftext|>` as Qwen3's; its chat template ends a turn with `<|im_end|>`, so a reply is
    `words<|im_end|>`."""
    words = {f"w{i}": i for i in range(vocab_size - 3)}
    vocab = {**words, UNK: vocab_size - 3, PAD: vocab_size - 2, EOS: vocab_size - 1}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
    )


def build_model(
    config: Qwen3Config, device: torch.device, dtype: torch.dtype, seed: int = 0
) -> Qwen3ForCausalLM:
    """The architecture on `meta`, then memory on the device and a cheap init: N(0, 0.02) matrices,
    unit norms, RoPE frequencies recomputed (buffers are not parameters: `to_empty` leaves them
    undefined)."""
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    model = model.to(dtype).to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:  # RMSNorm scales
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=generator)
    model.model.rotary_emb = type(model.model.rotary_emb)(config).to(device)
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_tflops(device: torch.device, given: float | None) -> tuple[float, str, float]:
    """(peak, where it comes from, a measured large-matmul rate): the data sheet's for known
    GPUs."""
    dtype, n = (torch.bfloat16, 8192) if device.type == "cuda" else (torch.float32, 256)
    a, b = (
        torch.randn(n, n, device=device, dtype=dtype),
        torch.randn(n, n, device=device, dtype=dtype),
    )
    for _ in range(3):
        a @ b
    sync(device)
    measured = 0.0
    for _ in range(5):  # the best of five short windows: a busy host slows some of them
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        sync(device)
        measured = max(measured, 2.0 * n**3 * 10 / (time.perf_counter() - start) / 1e12)
    if given:
        return given, "--peak-tflops", measured
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in PEAK_BF16_TFLOPS:
            if key in name:
                return tflops, f"data sheet ({key} bf16 dense)", measured
    return measured, f"measured {str(dtype).removeprefix('torch.')} matmul {n}x{n}", measured


def random_states(rng: np.random.Generator, n: int, prompt: int, vocab: int) -> list[list[dict]]:
    """`n` one-turn conversations of `prompt` tokens: prompt - 1 random words, then the turn's
    `<|im_end|>`."""
    ids = rng.integers(0, vocab - 3, size=(n, prompt - 1))
    return [[{"role": "user", "content": " ".join(f"w{i}" for i in row)}] for row in ids]


def bench_scoring(
    policy: HFPolicy,
    shape: Shape,
    env: dict,
    batches: list[int],
    seconds: float,
    deadline: float,
    peak: float,
    rng: np.random.Generator,
) -> tuple[list[dict], list[str]]:
    n_cands, cand_tokens, prompt = env["candidates"], env["candidate_tokens"], env["prompt"]
    # a fixed action set, as an env's: + <|im_end|> = cand_tokens tokens
    actions = [
        " ".join(f"w{i}" for i in rng.integers(0, shape.vocab - 3, size=cand_tokens - 1))
        for _ in range(n_cands)
    ]
    per_state = scoring_flops(shape, prompt, n_cands, cand_tokens)
    rows, skipped = [], []
    for batch in batches:
        if time.perf_counter() + 2 * seconds > deadline:
            skipped.append(f"scoring batch {batch}: out of time")
            continue
        policy.batch_size = batch
        # no prefix cache
        messages, candidates = random_states(rng, batch, prompt, shape.vocab), [actions] * batch
        try:
            policy.score(messages, candidates)  # warm-up
            sync(policy.device)
            states, start = 0, time.perf_counter()
            while states == 0 or time.perf_counter() - start < seconds:
                policy.score(messages, candidates)
                sync(policy.device)
                states += batch
            elapsed = time.perf_counter() - start
        except torch.OutOfMemoryError:
            skipped.append(f"scoring batch {batch}: out of memory")
            torch.cuda.empty_cache()
            break
        rate = states / elapsed
        rows.append(
            {
                "batch": batch,
                "states": states,
                "seconds": round(elapsed, 3),
                "states_per_s": round(rate, 1),
                "computed_tokens_per_s": round(rate * (prompt + n_cands * (cand_tokens - 1))),
                "tflops_per_s": sig(rate * per_state / 1e12),
                "mfu": sig(rate * per_state / 1e12 / peak),
            }
        )
    return rows, skipped


def scoring_check(policy: HFPolicy, env: dict, vocab: int, rng: np.random.Generator) -> dict:
    """Batched scores of states of unequal lengths (left padding, shared cache, tree attention, in
    the model's dtype) against one full forward per candidate: finite, and how far apart."""
    prompt = env["prompt"]
    states = [random_states(rng, 1, max(2, prompt - cut), vocab)[0] for cut in (0, 7, 13, 21)]
    actions = [
        " ".join(f"w{i}" for i in rng.integers(0, vocab - 3, size=env["candidate_tokens"] - 1))
        for _ in range(env["candidates"])
    ]
    policy.batch_size = len(states)
    batched = np.stack([s.logliks for s in policy.score(states, [actions] * len(states))])
    naive = np.stack([policy.score_naive(s, actions) for s in states])
    return {
        "finite": bool(np.isfinite(batched).all()),
        "max_abs_diff": round(float(np.abs(batched - naive).max()), 5),
        "mean_loglik": round(float(naive.mean()), 3),
    }


def bench_lora(
    model,
    shape: Shape,
    train: TrainParams,
    env: dict,
    batches: list[int],
    seconds: float,
    deadline: float,
    peak: float,
    device: torch.device,
) -> tuple[list[dict], list[str]]:
    from peft import get_peft_model

    from teachable.training.lora import lora_config

    # fp32 adapters on the bf16 base, as TRL gets them
    peft_model = get_peft_model(model, lora_config(train))
    peft_model.train()
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    n_lora = sum(p.numel() for p in trainable)
    optimizer = torch.optim.AdamW(trainable, lr=train.learning_rate, fused=device.type == "cuda")
    # a record: prompt + action
    completion, seq = env["candidate_tokens"], env["prompt"] + env["candidate_tokens"]

    def step(batch: int) -> None:
        ids = torch.randint(0, shape.vocab - 3, (batch, seq), device=device)
        labels = ids.clone()
        # the loss on the completion only (TRL's completion_only_loss)
        labels[:, :-completion] = -100
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = peft_model(
                input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels
            ).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    rows, skipped = [], []
    for batch in batches:
        if time.perf_counter() + 2 * seconds > deadline:
            skipped.append(f"lora batch {batch}: out of time")
            continue
        try:
            for _ in range(2):  # warm-up: allocator, kernel choice, optimizer state
                step(batch)
            sync(device)
            steps, start = 0, time.perf_counter()
            while steps < 3 or time.perf_counter() - start < seconds:
                step(batch)
                steps += 1
                if device.type == "cuda" and steps % 5 == 0:
                    sync(device)
            sync(device)
            elapsed = time.perf_counter() - start
        except torch.OutOfMemoryError:
            skipped.append(f"lora batch {batch}: out of memory")
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            break
        per_step = elapsed / steps
        useful, executed = (
            lora_flops(shape, batch, seq, completion, n_lora, all_logits=a) for a in (False, True)
        )
        rows.append(
            {
                "batch": batch,
                "seq_len": seq,
                "steps": steps,
                "seconds_per_step": round(per_step, 4),
                "tokens_per_s": round(batch * seq / per_step),
                "tflops_per_s": sig(useful / per_step / 1e12),
                "mfu": sig(useful / per_step / 1e12 / peak),
                "mfu_all_logits": sig(executed / per_step / 1e12 / peak),
                "lora_params": n_lora,
            }
        )
    return rows, skipped


def sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def table(title: str, rows: list[dict], columns: list[str]) -> str:
    widths = [max([len(c)] + [len(str(r[c])) for r in rows]) for c in columns]
    lines = [title, "  ".join(f"{c:>{w}s}" for c, w in zip(columns, widths))]
    lines += ["  ".join(f"{r[c]!s:>{w}s}" for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)


def write(path: Path | None, result: dict) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny config on the CPU (the mechanics, not a number)"
    )
    parser.add_argument("--env", default="babyai", choices=["babyai", "shop", "retail"])
    parser.add_argument(
        "--batches", type=int, nargs="+", help="states a scoring call (default 32 .. 1024)"
    )
    parser.add_argument(
        "--lora-batches",
        type=int,
        nargs="+",
        help="records a LoRA step (default: train.batch_size and 4x it)",
    )
    parser.add_argument("--prompt-tokens", type=int, help="prompt size (default: the env's)")
    parser.add_argument(
        "--params", default="params.yaml", help="the LoRA recipe: its `train` section"
    )
    parser.add_argument(
        "--seconds", type=float, help="timed seconds a point (default 8 on a GPU, 0.5 on the CPU)"
    )
    parser.add_argument(
        "--budget-s", type=float, default=420.0, help="stop starting new points after this"
    )
    parser.add_argument(
        "--peak-tflops", type=float, help="the device's peak, overriding the data sheet"
    )
    parser.add_argument("--out", type=Path, help="JSON results")
    args = parser.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        parser.error("no GPU here: --tiny runs the mechanics on the CPU")

    started = time.perf_counter()
    deadline = started + args.budget_s
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    seconds = args.seconds or (8.0 if device.type == "cuda" else 0.5)
    train = (
        load_params(args.params).train if Path(args.params).is_file() else TrainParams.defaults()
    )
    env = env_tokens(args.env) | ({"prompt": args.prompt_tokens} if args.prompt_tokens else {})
    batches = args.batches or ([4, 8] if args.tiny else [32, 64, 128, 256, 512, 1024])
    lora_batches = args.lora_batches or (
        [2] if args.tiny else [train.batch_size, 4 * train.batch_size]
    )
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    config = Qwen3Config(**(TINY if args.tiny else QWEN3_8B))
    peak, peak_source, matmul = peak_tflops(device, args.peak_tflops)
    tokenizer = word_tokenizer(config.vocab_size)
    model = build_model(config, device, dtype)
    shape = Shape.of(model)
    policy = HFPolicy(
        model, tokenizer, name="qwen3-8b-shape" if not args.tiny else "tiny", batch_size=batches[0]
    )
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "peak_tflops": sig(peak),
        "peak_source": peak_source,
        "matmul_tflops": sig(matmul),
        "model": {
            "shape": "tiny" if args.tiny else "Qwen3-8B",
            "dtype": str(dtype).removeprefix("torch."),
            "attn_implementation": model.config._attn_implementation,
            "n_params": sum(p.numel() for p in model.parameters()),
            "n_layer_params": shape.n_layer_params,
        },
        "workload": {
            "env": args.env,
            **env,
            "scoring_flops_per_state": scoring_flops(
                shape, env["prompt"], env["candidates"], env["candidate_tokens"]
            ),
        },
        "lora_recipe": {
            k: getattr(train, k)
            for k in (
                "lora_r",
                "lora_alpha",
                "lora_dropout",
                "target_modules",
                "batch_size",
                "learning_rate",
            )
        },
        "goals": GOALS,
        "skipped": [],
    }
    result["scoring_check"] = scoring_check(policy, env, shape.vocab, rng)
    # scoring gets 60% of the budget, the LoRA steps the rest
    scoring_deadline = started + 0.6 * args.budget_s
    result["scoring"], skipped = bench_scoring(
        policy, shape, env, batches, seconds, scoring_deadline, peak, rng
    )
    result["skipped"] += skipped
    write(args.out, result)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    result["lora"], skipped = bench_lora(
        model, shape, train, env, lora_batches, seconds, deadline, peak, device
    )
    result["skipped"] += skipped
    best = {
        "scoring_mfu": max((r["mfu"] for r in result["scoring"]), default=None),
        "lora_mfu": max((r["mfu"] for r in result["lora"]), default=None),
    }
    result["best"] = best
    result["meets_goals"] = {k: v is not None and v >= GOALS[k] for k, v in best.items()}
    if device.type == "cuda":
        result["max_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    write(args.out, result)

    print(
        f"{result['device']}: peak {sig(peak)} TFLOP/s ({peak_source}); "
        f"a large matmul {sig(matmul)} TFLOP/s"
    )
    print(
        f"model {result['model']['shape']} {result['model']['dtype']} "
        f"({result['model']['n_params']:,} parameters, {shape.n_layer_params:,} in the layers); "
        f"{args.env}: prompt {env['prompt']} tokens, {env['candidates']} "
        f"candidates of {env['candidate_tokens']}"
    )
    print(f"scoring check (padded batch vs one forward a candidate): {result['scoring_check']}")
    print(
        table(
            "scoring (HFPolicy.score)",
            result["scoring"],
            ["batch", "states_per_s", "computed_tokens_per_s", "tflops_per_s", "mfu"],
        )
    )
    print(
        table(
            f"LoRA SFT step (r={train.lora_r}, {', '.join(train.target_modules)})",
            result["lora"],
            ["batch", "seq_len", "seconds_per_step", "tokens_per_s", "mfu", "mfu_all_logits"],
        )
    )
    for line in result["skipped"]:
        print(f"skipped: {line}")
    print(
        f"best MFU: scoring {best['scoring_mfu']} (goal {GOALS['scoring_mfu']}), LoRA "
        f"{best['lora_mfu']} (goal {GOALS['lora_mfu']}); {result['elapsed_s']} s"
    )
    return result


if __name__ == "__main__":
    main()
