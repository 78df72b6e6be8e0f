"""Phase 5 (H7): which snapshots to train on at a fixed budget K.

`random` (a seeded uniform sample), `entropy` (top-K student uncertainty U), `predictor` (top-K predicted ELP, from
the phase 4 predictor's out-of-fold predictions, so no snapshot is ranked by a model that saw its own label) and
`oracle` (top-K true ELP_net, the upper bound). Ties break by snapshot id, so a selection is deterministic.
"""

from __future__ import annotations

import random

SELECTION_METHODS = ("random", "entropy", "predictor", "oracle")


def select(records: list[dict], method: str, k: int, seed: int, predicted: dict[str, float] | None = None) -> list[dict]:
    pool = sorted(records, key=lambda r: r["snapshot_id"])
    k = min(k, len(pool))
    if method == "random":
        return random.Random(seed).sample(pool, k)
    if method == "entropy":
        score = lambda r: r["U"]  # noqa: E731
    elif method == "oracle":
        score = lambda r: r["cpt"]["ELP_net"]  # noqa: E731
    elif method == "predictor":
        if predicted is None:
            raise ValueError("the predictor method needs predicted ELP per snapshot")
        missing = [r["snapshot_id"] for r in pool if r["snapshot_id"] not in predicted]
        if missing:
            raise ValueError(f"no predicted ELP for {len(missing)} snapshots, e.g. {missing[:3]}")
        score = lambda r: predicted[r["snapshot_id"]]  # noqa: E731
    else:
        raise ValueError(f"unknown selection method {method!r}; known: {SELECTION_METHODS}")
    return sorted(pool, key=lambda r: -score(r))[:k]  # stable: equal scores keep snapshot-id order
