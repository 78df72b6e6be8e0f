"""Phase 2 training data: one cell per quadrant x supervision format, plus two baselines drawn from
the same pool.

Cells are size-matched by default (`train.records_per_cell`): each cell trains on a seeded subsample
of its quadrant of the same size, so a difference between cells is not a difference in the amount of
training. Every cell is trained `train.n_seeds` times; training seed k draws its own subsample
(shared by the formats of a quadrant, so formats compare on the same snapshots) and its own
initialisation. `random` is a uniform sample of the cell size from the pool of every (snapshot,
format) record; `all` is the whole pool. `self` is the control: a cell's size of snapshots in the
demo format with the student's own most likely action in the teacher's place, an update of the
same size that teaches nothing new, so a model minus `self` is what its supervision taught net of
what any update costs (docs/RESULTS.md).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from teachable.core.records import InputError
from teachable.labeling.quadrants import QUADRANTS, SHORT_NAMES
from teachable.training.supervision import FORMATS, preference_pair, supervision_record

QUADRANT_BY_SHORT = {short: q for q, short in SHORT_NAMES.items()}  # Q1 -> Q1_highU_highL
BASELINES = ("random", "all", "self")


def training_records(snapshots: list[dict], fmt: str, method: str = "sft") -> list[dict]:
    """SFT records in format `fmt`, or DPO preference pairs on the same prompts."""
    make = preference_pair if method == "dpo" else supervision_record
    return [make(r, fmt) for r in snapshots]


def training_seed(seed: int, k: int) -> int:
    """The k-th training seed of a run (initialisation and subsample), a stream of its own."""
    return random.Random(f"train|{seed}|{k}").getrandbits(31)


def cell_size(
    records: list[dict], quadrants: list[str], records_per_cell: int | str | None
) -> int | None:
    """Records per cell: a fixed number, or `min` = the smallest non-empty quadrant among those
    trained (every cell can then be filled); None = no size matching."""
    if records_per_cell != "min":
        return records_per_cell
    counts = [sum(r["quadrant"] == QUADRANT_BY_SHORT[q] for r in records) for q in quadrants]
    return min((c for c in counts if c), default=None)


def _subsample(items: list, size: int | None, key: str) -> list:
    items = sorted(items, key=lambda r: r["snapshot_id"])
    if size is None or size >= len(items):
        return items
    return random.Random(key).sample(items, size)


def cell_records(
    records: list[dict],
    quadrant: str,
    fmt: str,
    method: str = "sft",
    size: int | None = None,
    seed: int = 0,
) -> list[dict]:
    """The quadrant's snapshots in format `fmt`; with `size`, a subsample keyed by (quadrant, seed)
    only, so every format of a quadrant trains on the same snapshots."""
    full = QUADRANT_BY_SHORT[quadrant]
    chosen = _subsample(
        [r for r in records if r["quadrant"] == full], size, f"cell|{quadrant}|{seed}"
    )
    return training_records(chosen, fmt, method)


def self_labelled(record: dict) -> dict:
    """The snapshot with the student's most likely action (its `student_probs`; ties to the first
    listed) in the teacher's place."""
    probs = record["student_probs"]
    return {
        **record,
        "teacher": {**record["teacher"], "suggested_action": max(probs, key=probs.get)},
    }


def baseline_records(
    records: list[dict], name: str, seed: int, method: str = "sft", size: int | None = None
) -> list[dict]:
    """A baseline's records with training seed `seed`; `size` None: `random` and `self` take the
    mean cell size of an unmatched matrix (the pool over quadrants x formats)."""
    if name == "self":
        if method != "sft":
            raise InputError(
                "train.baselines: `self` trains SFT only (its chosen and rejected actions would be "
                "the student's own); remove it for train.method dpo"
            )
        size = size if size is not None else round(len(records) / len(QUADRANTS))
        chosen = _subsample(records, size, f"self|{seed}")
        return training_records([self_labelled(r) for r in chosen], "demo")
    pool = [rec for r in records for fmt in FORMATS for rec in training_records([r], fmt, method)]
    if name == "all":
        return pool
    if name == "random":
        size = size if size is not None else round(len(pool) / (len(QUADRANTS) * len(FORMATS)))
        return random.Random(seed).sample(pool, min(size, len(pool)))
    raise ValueError(f"unknown baseline {name!r}; known: {BASELINES}")


def phase2_cells(train) -> list[str]:
    """The phase 2 models the current params (`train`, a TrainParams) define, as dvc.yaml trains
    them: every `train.quadrants` x `train.formats` cell (stage `train`), the `train.baselines`
    (`train_baseline`) and `recovery` (`train_recovery`). A directory under models/phase2 that is
    none of these is from earlier params."""
    return (
        [f"{q}-{f}" for q in train.quadrants for f in train.formats]
        + list(train.baselines)
        + ["recovery"]
    )


def cell_stage(cell: str) -> str:
    """The dvc.yaml stage that trains a phase 2 cell."""
    if cell == "recovery":
        return "train_recovery"
    return f"train@{cell}" if "-" in cell else f"train_baseline@{cell}"


def cell_metrics(phase2: str | Path, cell: str) -> dict:
    """A defined cell's `metrics.json`; an InputError naming the cell and the stage to run when it
    was not trained (no metrics.json) or the file is malformed."""
    path = Path(phase2) / cell / "metrics.json"
    if not path.is_file():
        what = "has no metrics.json" if path.parent.is_dir() else "does not exist"
        raise InputError(
            f"{path.parent} {what}: the params define model {cell} but it has not been trained; "
            f"run `dvc repro {cell_stage(cell)}`"
        )
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise InputError(
            f"{path}: malformed JSON ({err}); run `dvc repro {cell_stage(cell)}`"
        ) from None
