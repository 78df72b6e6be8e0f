"""Task seeds, kept in disjoint ranges per purpose so no task is both trained on and evaluated on.

A task is (level, seed); task i of a split uses level `levels[i % len(levels)]` and seed `offset +
base + i`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

SPLIT_OFFSETS = {
    "pipeline": 0,  # phase 0 student rollouts (snapshots, retention panel)
    "student_train": 10_000_000,  # the offline student's demonstrations
    "student_eval": 20_000_000,  # the offline student's held-out success
    "expert": 30_000_000,  # experiment B: states sampled from expert trajectories
    "heldout": 40_000_000,  # phase 3 evaluation
}
SPLIT_SIZE = 10_000_000


@dataclass(frozen=True)
class Task:
    level: str
    seed: int

    @property
    def task_id(self) -> str:
        return f"{self.level}-{self.seed}"


def make_tasks(levels: list[str], n: int, split: str, base_seed: int = 0) -> list[Task]:
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"unknown split {split!r}; known: {sorted(SPLIT_OFFSETS)}")
    if base_seed + n > SPLIT_SIZE:
        raise ValueError(f"{n} tasks from seed {base_seed} overflow the {split!r} seed range")
    offset = SPLIT_OFFSETS[split] + base_seed
    return [Task(levels[i % len(levels)], offset + i) for i in range(n)]


def is_heldout(seed: int, fraction: float) -> bool:
    """Whether a snapshot task is held out of all training (phase 3 evaluates on it). Decided by the
    task seed alone (a stable hash, not Python's salted `hash`), so every snapshot of one task lands
    on the same side."""
    digest = hashlib.sha256(str(seed).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def training_snapshots(records: list[dict]) -> list[dict]:
    """The snapshots training may use: those the `quadrants` stage put on the train side of the
    split."""
    return [r for r in records if r.get("split", "train") == "train"]


def rollout_sample_seed(seed: int, i: int) -> int:
    """The student's sampling stream for phase 0 rollout `i` (`stages/rollouts.py`, task i of
    `make_tasks(..., "pipeline")`) under the run's `seed`. Evaluation must not reuse it
    (`evaluation.panel_sample_seed`): a retention task is a phase 0 task the base solved, and this
    stream would replay that very success."""
    return seed * 1_000_003 + i
