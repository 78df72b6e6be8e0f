"""Any Hugging Face causal LM as a policy over candidate actions.

`score` returns, for a batch of states, each candidate action's log-likelihood (the sum over the
assistant's reply tokens, end-of-turn included). Each prompt is run once; its KV cache is repeated
for that state's candidates, and only the candidate tokens are run on top of it, so scoring k
candidates costs one prompt pass, not k.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from teachable.policy.prompts import completion_ids, render_prompt, stop_token_ids

log = logging.getLogger(__name__)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return (
            torch.bfloat16
            if device.type == "cuda" and torch.cuda.is_bf16_supported()
            else torch.float32
        )
    return getattr(torch, dtype)


def to_distribution(logliks: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax over candidates; temperature 0 puts all mass on the best."""
    if temperature == 0:
        probs = np.zeros_like(logliks)
        probs[int(np.argmax(logliks))] = 1.0
        return probs
    z = logliks / temperature
    z = np.exp(z - z.max())
    return z / z.sum()


@dataclass
class Scores:
    candidates: list[str]
    logliks: np.ndarray  # per candidate

    @property
    def probs(self) -> np.ndarray:
        return to_distribution(self.logliks)


class HFPolicy:
    def __init__(self, model, tokenizer, name: str = "student", batch_size: int = 64):
        self.name = name
        self.model = model
        self.device = next(model.parameters()).device
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size

    @classmethod
    def load(
        cls, model_path: str, device: str = "auto", dtype: str = "auto", batch_size: int = 64
    ) -> HFPolicy:
        """Any causal LM from a local directory (or an id already in the local cache); never remote
        code."""
        torch_device = pick_device(device)
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=pick_dtype(dtype, torch_device)
        )
        return cls(
            model.to(torch_device).eval(), tokenizer, name=str(model_path), batch_size=batch_size
        )

    # -- prompts -----------------------------------------------------------------------------------
    def prompt(self, messages: list[dict]) -> str:
        return render_prompt(self.tokenizer, messages)

    # -- scoring -----------------------------------------------------------------------------------
    def score(self, messages: list[list[dict]], candidates: list[list[str]]) -> list[Scores]:
        """Log-likelihood of every candidate of every state, in chunks of `batch_size` states."""
        prompts = [self.prompt(m) for m in messages]
        out: list[Scores] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            logliks = self._score_chunk(prompts[chunk], candidates[chunk])
            out.extend(Scores(list(c), ll) for c, ll in zip(candidates[chunk], logliks))
        return out

    @torch.inference_mode()
    def _score_chunk(self, prompts: list[str], candidates: list[list[str]]) -> list[np.ndarray]:
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        ids, mask = enc.input_ids.to(self.device), enc.attention_mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        prompt_out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )

        n_states, n_cands = len(prompts), max(len(c) for c in candidates)
        tokens = [[completion_ids(self.tokenizer, a) for a in cands] for cands in candidates]
        length = max(len(t) for cands in tokens for t in cands)
        cand_ids = torch.full(
            (n_states, n_cands, length), self.tokenizer.pad_token_id, dtype=torch.long
        )
        cand_mask = torch.zeros((n_states, n_cands, length), dtype=torch.long)
        for i, cands in enumerate(tokens):
            for k, t in enumerate(cands):
                cand_ids[i, k, : len(t)] = torch.tensor(t)
                cand_mask[i, k, : len(t)] = 1
        cand_ids, cand_mask = cand_ids.to(self.device), cand_mask.to(self.device)

        # The first candidate token is predicted by the prompt's last position.
        first = torch.log_softmax(prompt_out.logits[:, -1].float(), dim=-1)
        token_logp = torch.zeros((n_states, n_cands, length), device=self.device)
        token_logp[:, :, 0] = first.gather(1, cand_ids[:, :, 0])

        if length > 1:
            rest = self._candidate_pass(prompt_out.cache, mask, positions[:, -1] + 1, tokens)
            token_logp[:, :, 1:] = rest[:, :n_cands, : length - 1]

        totals = (token_logp * cand_mask).sum(-1).cpu().numpy().astype(np.float64)
        return [totals[i, : len(c)] for i, c in enumerate(candidates)]

    def _candidate_pass(self, cache, prompt_mask, prompt_len, tokens) -> torch.Tensor:
        """Log-probs of every candidate token after the first, all candidates of a state in one
        sequence.

        A state's candidates are laid side by side after its prompt; a 4D mask lets each token
        attend to the prompt (through the shared cache, never copied per candidate) and to the
        earlier tokens of its own candidate only, with positions restarting after the prompt for
        every candidate (tree attention). Returns (states, max candidates, max length - 1), zero
        where there is no token.
        """
        rows = [
            [(k, j, t[j], t[j + 1]) for k, t in enumerate(cands) for j in range(len(t) - 1)]
            for cands in tokens
        ]
        n_states, width = len(rows), max(len(r) for r in rows)
        n_cands, length = max(len(c) for c in tokens), max(len(t) for c in tokens for t in c)
        out = torch.zeros((n_states, n_cands, length - 1), device=self.device)
        if width == 0:
            return out
        # candidate, offset, input token, target token
        grid = np.zeros((4, n_states, width), dtype=np.int64)
        grid[0] = -1 - np.arange(width)  # padding: a candidate of its own (attends to itself only)
        for i, row in enumerate(rows):
            if row:
                grid[:, i, : len(row)] = np.array(row).T
        cand, offset, inputs, targets = (torch.from_numpy(g).to(self.device) for g in grid)
        own = (cand[:, :, None] == cand[:, None, :]) & (offset[:, None, :] <= offset[:, :, None])
        seen_prompt = prompt_mask[:, None, :].bool().expand(n_states, width, prompt_mask.shape[1])
        attend = torch.cat([seen_prompt, own], dim=-1)[:, None]
        positions = prompt_len[:, None] + offset
        logits = self.model(
            input_ids=inputs, attention_mask=attend, position_ids=positions, cache=cache
        ).logits
        logits = logits.float()
        logp = logits.gather(-1, targets[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        real = cand >= 0
        idx = real.nonzero(as_tuple=True)
        out[idx[0], cand[idx], offset[idx]] = logp[idx]
        return out

    @torch.inference_mode()
    def score_naive(self, messages: list[dict], candidates: list[str]) -> np.ndarray:
        """Reference scorer: one full forward per candidate, no batching, no cache (tests and
        benchmarks)."""
        prompt_ids = self.tokenizer(self.prompt(messages), add_special_tokens=False).input_ids
        logliks = []
        for action in candidates:
            cand = completion_ids(self.tokenizer, action)
            ids = torch.tensor([prompt_ids + cand], device=self.device)
            logp = torch.log_softmax(self.model(input_ids=ids).logits[0].float(), dim=-1)
            positions = torch.arange(
                len(prompt_ids) - 1, len(prompt_ids) + len(cand) - 1, device=self.device
            )
            logliks.append(float(logp[positions, torch.tensor(cand, device=self.device)].sum()))
        return np.array(logliks)

    # -- generation --------------------------------------------------------------------------------
    def _stop_ids(self) -> list[int]:
        """A reply ends at the template's end-of-turn token or at eos (`prompts.stop_token_ids`)."""
        return stop_token_ids(self.tokenizer)

    @torch.inference_mode()
    def generate(
        self,
        messages: list[list[dict]],
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        seed: int = 0,
    ):
        """Free text replies (the generate-and-parse mode), decoded without special tokens."""
        prompts = [self.prompt(m) for m in messages]
        replies: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            enc = self.tokenizer(
                prompts[start : start + self.batch_size],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(self.device)
            torch.manual_seed(seed + start)
            sampling = (
                {"do_sample": True, "temperature": temperature}
                if temperature > 0
                else {"do_sample": False}
            )
            out = self.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self._stop_ids(),
                **sampling,
            )
            replies += self.tokenizer.batch_decode(
                out[:, enc.input_ids.shape[1] :], skip_special_tokens=True
            )
        return replies


class NaivePolicy:
    """The reference loop: one state at a time, one full forward pass per candidate (benchmarks'
    baseline)."""

    def __init__(self, policy: HFPolicy):
        self.policy, self.name = policy, policy.name

    def score(self, messages: list[list[dict]], candidates: list[list[str]]) -> list[Scores]:
        return [
            Scores(list(c), self.policy.score_naive(m, c)) for m, c in zip(messages, candidates)
        ]
