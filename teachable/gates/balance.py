"""Phase 2's quadrant balance: are there enough snapshots in every quadrant to train and compare
cells? A count against a threshold fixed in advance (`quadrants.min_per_quadrant`), not a test; the
seeds' paper-scale N > 300 is recorded beside it without deciding the status."""

from __future__ import annotations

from teachable.gates.core import FAIL, PASS, verdict

PAPER_MIN_PER_QUADRANT = 300


def quadrant_balance(counts: dict[str, int], min_per_quadrant: int) -> dict:
    low = min(counts.values()) if counts else 0
    return verdict(
        "min_snapshots_per_quadrant",
        low,
        None,
        None,
        None,
        PASS if low >= min_per_quadrant else FAIL,
        sum(counts.values()),
        threshold=min_per_quadrant,
        counts=counts,
        smallest=min(counts, key=counts.get) if counts else None,
        paper_threshold=PAPER_MIN_PER_QUADRANT,
        paper_status=PASS if low > PAPER_MIN_PER_QUADRANT else FAIL,
    )
