"""Phase 2 training data: one cell per quadrant x supervision format, plus two baselines drawn from the same pool.

Cells are size-matched by default (`train.records_per_cell`): each cell trains on a seeded subsample of its
quadrant of the same size, so a difference between cells is not a difference in the amount of training. Every
cell is trained `train.n_seeds` times; training seed k draws its own subsample (shared by the formats of a
quadrant, so formats compare on the same snapshots) and its own initialisation. `random` is a uniform sample of
the cell size from the pool of every (snapshot, format) record; `all` is the whole pool.
"""

from __future__ import annotations

import random

from teachable.labeling.quadrants import QUADRANTS, SHORT_NAMES
from teachable.training.supervision import FORMATS, preference_pair, supervision_record

QUADRANT_BY_SHORT = {short: q for q, short in SHORT_NAMES.items()}  # Q1 -> Q1_highU_highL
BASELINES = ("random", "all")


def training_records(snapshots: list[dict], fmt: str, method: str = "sft") -> list[dict]:
    """SFT records in format `fmt`, or DPO preference pairs on the same prompts."""
    make = preference_pair if method == "dpo" else supervision_record
    return [make(r, fmt) for r in snapshots]


def training_seed(seed: int, k: int) -> int:
    """The k-th training seed of a run (initialisation and subsample), a stream of its own."""
    return random.Random(f"train|{seed}|{k}").getrandbits(31)


def cell_size(records: list[dict], quadrants: list[str], records_per_cell: int | str | None) -> int | None:
    """Records per cell: a fixed number, or `min` = the smallest non-empty quadrant among those trained (every
    cell can then be filled); None = no size matching."""
    if records_per_cell != "min":
        return records_per_cell
    counts = [sum(r["quadrant"] == QUADRANT_BY_SHORT[q] for r in records) for q in quadrants]
    return min((c for c in counts if c), default=None)


def _subsample(items: list, size: int | None, key: str) -> list:
    items = sorted(items, key=lambda r: r["snapshot_id"])
    if size is None or size >= len(items):
        return items
    return random.Random(key).sample(items, size)


def cell_records(records: list[dict], quadrant: str, fmt: str, method: str = "sft", size: int | None = None,
                 seed: int = 0) -> list[dict]:
    """The quadrant's snapshots in format `fmt`; with `size`, a subsample keyed by (quadrant, seed) only, so every
    format of a quadrant trains on the same snapshots."""
    full = QUADRANT_BY_SHORT[quadrant]
    chosen = _subsample([r for r in records if r["quadrant"] == full], size, f"cell|{quadrant}|{seed}")
    return training_records(chosen, fmt, method)


def baseline_records(records: list[dict], name: str, seed: int, method: str = "sft",
                     size: int | None = None) -> list[dict]:
    pool = [rec for r in records for fmt in FORMATS for rec in training_records([r], fmt, method)]
    if name == "all":
        return pool
    if name == "random":
        size = size if size is not None else round(len(pool) / (len(QUADRANTS) * len(FORMATS)))
        return random.Random(seed).sample(pool, min(size, len(pool)))
    raise ValueError(f"unknown baseline {name!r}; known: {BASELINES}")
