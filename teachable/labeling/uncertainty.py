"""Uncertainty of the student's distribution over the valid actions."""

from __future__ import annotations

import numpy as np


def uncertainty(probs) -> dict[str, float]:
    """entropy (nats), margin (top1 - top2), top_prob, and entropy normalised by log(#actions)."""
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum()
    nz = p[p > 0]
    entropy = float(-(nz * np.log(nz)).sum())
    top = np.sort(p)[::-1]
    return {
        "entropy": round(entropy, 6),
        "margin": round(float(top[0] - (top[1] if len(top) > 1 else 0.0)), 6),
        "top_prob": round(float(top[0]), 6),
        "normalized_entropy": round(entropy / np.log(len(p)), 6) if len(p) > 1 else 0.0,
    }
