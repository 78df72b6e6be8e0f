"""One model of cost, shared by the planner (`teachable/plan/planner.py`) and the GPU check
(`benchmarks/gpu.py`): the FLOPs a scoring call, a generated token and a LoRA step take, per engine,
from the student's shape.

The parameter count. N is the decoder layers' weight matrices only (attention q, k, v, o and the
MLP's gate, up, down; embedding, lm_head and the norms' scales excluded): a token through the layers
costs 2 N FLOPs forward. The lm_head is counted apart, 2 d V a position, and only where logits are
computed; the embedding is a lookup (no FLOPs). Attention is 4 L H h FLOPs per key a query sees
(QK^T and AV), causal. Qwen3-8B: N = 6.95e9 (8.19e9 in all with the embedding and the untied
lm_head), d V = 0.62e9, 4 L H h = 5.9e5.

Scoring a state (a prompt of P tokens, n candidates of c tokens each, end-of-turn included):

  hf      P + n (c - 1) tokens; logits at 1 + n (c - 1) positions. The prompt runs once and its KV
          cache is shared by the candidates, whose first token the prompt's last position predicts
          (`HFPolicy.score`; torch's FLOP counter checks this count, tests/test_gpu_benchmark.py).
  sglang  P + n (c + 1) tokens; logits at 1 + n (c + 1). The client prefills the prompt alone, then
          sends the n candidates with `logprob_start_len` P - 1; RadixAttention serves at most
          `logprob_start_len` tokens from its cache (schedule_batch.py `_compute_max_prefix_len`),
          so each candidate recomputes c + 1 positions.
  vllm    n (P + c) tokens; logits at n (P + c). Prompt log-probs bypass vLLM's prefix cache
          (v1/core/kv_cache_manager.py `get_computed_blocks`: no cache hit for a request with
          prompt_logprobs), so every candidate prefills the whole prompt again, and
          `prompt_logprobs` needs logits at every position.

Generating a reply of r tokens: the prompt's prefill (P tokens, one logit), then r decode steps of 2
N + 2 d V FLOPs each plus attention; a decode step of a batch of b sequences also reads every weight
once (2 bytes a parameter in bf16, the lm_head included), which bounds it by memory bandwidth at
small b.

A LoRA SFT step on B records of S = P + c tokens (the completion c): B (4 N S + 4 d V c + 3 A + 6 M
S): forward 2 N and backward 2 N through the frozen base (activation gradients only), the lm_head
where the loss reads, causal attention A = 4 L H h S (S + 1) / 2 run forward once and backward
twice, and the adapters' M parameters (forward 2 M, backward 4 M a token).
"""

from __future__ import annotations

from dataclasses import dataclass

ENGINES = ("hf", "sglang", "vllm")
# Qwen3-8B's config.json (huggingface.co/Qwen/Qwen3-8B): 36 layers of hidden 4096, 32 query / 8 KV
# heads of 128, MLP 12288, vocabulary 151936, lm_head not tied to the embedding.
QWEN3_8B = dict(
    hidden_size=4096,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    intermediate_size=12288,
    vocab_size=151936,
    tie_word_embeddings=False,
)
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Shape:
    layers: int
    heads: int
    head_dim: int
    hidden: int
    vocab: int
    n_layer_params: int  # N: the decoder layers' weight matrices
    kv_heads: int = 0
    intermediate: int = 0
    tied: bool = False

    @classmethod
    def from_config(cls, c: dict) -> Shape:
        """From a Hugging Face config (a dict): N counted from the projections' sizes."""
        d, heads = c["hidden_size"], c["num_attention_heads"]
        kv = c.get("num_key_value_heads") or heads
        h = c.get("head_dim") or d // heads
        inter = c["intermediate_size"]
        per_layer = d * heads * h + 2 * d * kv * h + heads * h * d + 3 * d * inter
        return cls(
            c["num_hidden_layers"],
            heads,
            h,
            d,
            c["vocab_size"],
            c["num_hidden_layers"] * per_layer,
            kv,
            inter,
            bool(c.get("tie_word_embeddings", False)),
        )

    @classmethod
    def of(cls, model) -> Shape:
        """From a loaded model: N counted from its 2-D weights outside the embedding and lm_head
        (LoRA's left out)."""
        c = model.config
        n = sum(
            p.numel()
            for name, p in model.named_parameters()
            if p.ndim == 2
            and "embed_tokens" not in name
            and "lm_head" not in name
            and "lora_" not in name
        )
        return cls(
            c.num_hidden_layers,
            c.num_attention_heads,
            c.head_dim,
            c.hidden_size,
            c.vocab_size,
            n,
            c.num_key_value_heads,
            c.intermediate_size,
            bool(getattr(c, "tie_word_embeddings", False)),
        )

    @property
    def n_params(self) -> int:
        """All matrices: N, the embedding and (untied) the lm_head; the norms' scales left out."""
        return self.n_layer_params + self.hidden * self.vocab * (1 if self.tied else 2)

    @property
    def lm_head(self) -> int:
        return self.hidden * self.vocab

    def attention(self, keys: float) -> float:
        """QK^T and AV for queries that see `keys` keys in all: 2 matmuls x 2 FLOPs x heads x head
        dim a key."""
        return 4.0 * self.layers * self.heads * self.head_dim * keys

    def flops(self, tokens: float, logits: float, keys: float) -> float:
        return (
            2.0 * self.n_layer_params * tokens + 2.0 * self.lm_head * logits + self.attention(keys)
        )

    def lora_params(self, r: int, modules) -> int:
        """A LoRA adapter's parameters: r (in + out) for each targeted projection of each layer."""
        d, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        sizes = {
            "q_proj": (d, q),
            "k_proj": (d, kv),
            "v_proj": (d, kv),
            "o_proj": (q, d),
            "gate_proj": (d, self.intermediate),
            "up_proj": (d, self.intermediate),
            "down_proj": (self.intermediate, d),
        }
        targets = LORA_MODULES if modules in ("all-linear", ["all-linear"]) else modules
        return self.layers * sum(r * sum(sizes[m]) for m in targets if m in sizes)


def _causal(start: int, end: int) -> float:
    """Keys seen by the queries at positions start..end-1 of a causal sequence (position i sees
    i + 1)."""
    return (end * (end + 1) - start * (start + 1)) / 2


def scoring_work(engine: str, prompt: int, n: int, c: int) -> dict:
    """Tokens computed, positions with logits, and attention keys for scoring one state on
    `engine`."""
    if engine == "hf":
        after = c - 1
        keys = _causal(0, prompt) + n * (_causal(prompt, prompt + after))
        return {"tokens": prompt + n * after, "logits": 1 + n * after, "keys": keys}
    if engine == "sglang":
        keys = _causal(0, prompt) + n * _causal(prompt - 1, prompt + c)
        return {"tokens": prompt + n * (c + 1), "logits": 1 + n * (c + 1), "keys": keys}
    if engine == "vllm":
        return {
            "tokens": n * (prompt + c),
            "logits": n * (prompt + c),
            "keys": n * _causal(0, prompt + c),
        }
    raise ValueError(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")


def scoring_flops(
    s: Shape, prompt: int, n: int, c: int, engine: str = "hf", attention: bool = True
) -> float:
    w = scoring_work(engine, prompt, n, c)
    return s.flops(w["tokens"], w["logits"], w["keys"] if attention else 0.0)


def generate_flops(s: Shape, prompt: int, reply: int) -> float:
    """A generated reply: the prompt's prefill (one logit), then `reply` decode steps."""
    return s.flops(prompt + reply, 1 + reply, _causal(0, prompt + reply))


def decode_bytes(s: Shape) -> float:
    """Weights a decode step reads (bf16): the layers and the lm_head, shared by every sequence of
    the batch."""
    return 2.0 * (s.n_layer_params + s.lm_head)


def lora_flops(
    s: Shape, batch: int, seq: int, completion: int, lora_params: int, all_logits: bool = False
) -> float:
    logit_tokens = seq if all_logits else completion
    per_record = (
        4.0 * s.n_layer_params * seq
        + 4.0 * s.lm_head * logit_tokens
        + 3.0 * s.attention(_causal(0, seq))
        + 6.0 * lora_params * seq
    )
    return batch * per_record
