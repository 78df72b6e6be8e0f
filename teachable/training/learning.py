"""Did a trained adapter move the student where it was trained? The student's probability of the
teacher's action at each of the model's own training snapshots (its plain prompt, as at test time:
no patch), without and with the adapter. A cell whose adapter leaves this unchanged cannot tell
supervision formats or quadrants apart, whatever phase 3 finds; its success on those snapshots
(`evaluate_models`'s learning panel) says whether the change matters."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import t as t_dist

from teachable.policy.prompts import build_messages


def expert_probabilities(policy, snapshots: list[dict]) -> np.ndarray:
    """p(teacher's action | the snapshot's plain prompt) under `policy`, one per snapshot, over its
    valid actions."""
    messages = [
        build_messages(r["mission"], r["obs"], r["valid_actions"], r["history"]) for r in snapshots
    ]
    scores = policy.score(messages, [r["valid_actions"] for r in snapshots])
    return np.array(
        [
            sc.probs[sc.candidates.index(r["teacher"]["suggested_action"])]
            if r["teacher"]["suggested_action"] in sc.candidates
            else 0.0
            for sc, r in zip(scores, snapshots)
        ]
    )


def probability_shift(before: np.ndarray, after: np.ndarray, confidence: float = 0.95) -> dict:
    """Mean of after − before over the snapshots with a paired t interval."""
    diff = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    n = diff.size
    if n == 0:
        return {
            "p_expert_base": None,
            "p_expert_trained": None,
            "delta": None,
            "ci": [None, None],
            "n": 0,
        }
    mean = float(diff.mean())
    return {
        "p_expert_base": round(float(np.mean(before)), 6),
        "p_expert_trained": round(float(np.mean(after)), 6),
        "delta": round(mean, 6),
        "ci": t_interval(diff, confidence),
        "n": n,
    }


def adapter_shift(policy, adapter_dir, snapshots: list[dict]) -> dict:
    """`probability_shift` of an adapter on `snapshots`, the shared base model left as it was."""
    from peft import PeftModel

    from teachable.policy.hf import HFPolicy

    before = expert_probabilities(policy, snapshots)
    model = PeftModel.from_pretrained(policy.model, str(adapter_dir)).eval()
    try:
        after = expert_probabilities(
            HFPolicy(model, policy.tokenizer, policy.name, policy.batch_size), snapshots
        )
    finally:
        model.unload()
    return probability_shift(before, after)


def pooled_shift(per_seed: list[dict | None]) -> dict | None:
    """A cell's shift over its training seeds: the mean of the seeds' deltas, with a t interval over
    the seeds (each seed trains its own subsample and initialisation, so the seeds are the
    replicates)."""
    deltas = np.array([s["delta"] for s in per_seed if s and s.get("delta") is not None])
    if deltas.size == 0:
        return None
    return {
        "delta": round(float(deltas.mean()), 6),
        "ci": t_interval(deltas),
        "n_seeds": int(deltas.size),
    }


def t_interval(values: np.ndarray, confidence: float = 0.95) -> list[float | None]:
    """The mean's Student t interval (None bounds for fewer than two values)."""
    n = values.size
    if n < 2:
        return [None, None]
    mean, half = (
        float(values.mean()),
        float(t_dist.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)),
    )
    return [round(mean - half, 6), round(mean + half, 6)]
