"""Phase 2 training data: one cell per quadrant x supervision format, plus two baselines drawn from the same pool.

The pool is every (snapshot, format) record of the 12 cells. `random` is a uniform sample from the pool of the
mean cell size; `all` is the whole pool.
"""

from __future__ import annotations

import random

from teachable.labeling.quadrants import QUADRANTS
from teachable.supervision import FORMATS, preference_pair, supervision_record

QUADRANT_BY_SHORT = {q.split("_")[0]: q for q in QUADRANTS}  # Q1 -> Q1_highU_highL
BASELINES = ("random", "all")


def cell_id(quadrant: str, fmt: str) -> str:
    return f"{quadrant}-{fmt}"


def training_records(snapshots: list[dict], fmt: str, method: str = "sft") -> list[dict]:
    """SFT records in format `fmt`, or DPO preference pairs on the same prompts."""
    make = preference_pair if method == "dpo" else supervision_record
    return [make(r, fmt) for r in snapshots]


def cell_records(records: list[dict], quadrant: str, fmt: str, method: str = "sft") -> list[dict]:
    full = QUADRANT_BY_SHORT[quadrant]
    return training_records([r for r in records if r["quadrant"] == full], fmt, method)


def baseline_records(records: list[dict], name: str, seed: int, method: str = "sft") -> list[dict]:
    pool = [rec for r in records for fmt in FORMATS for rec in training_records([r], fmt, method)]
    if name == "all":
        return pool
    if name == "random":
        size = round(len(pool) / (len(QUADRANTS) * len(FORMATS)))
        return random.Random(seed).sample(pool, size)
    raise ValueError(f"unknown baseline {name!r}; known: {BASELINES}")
