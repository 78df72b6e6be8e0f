"""Phase 5 (H7): which snapshots to train on at a fixed budget K.

`random` (a seeded uniform sample), `entropy` (top-K student uncertainty U), `predictor` (top-K
predicted ELP, from the phase 4 predictor's out-of-fold predictions, so no snapshot is ranked by a
model that saw its own label) and `oracle` (top-K measured ELP, the upper bound). The oracle ranks
by the ELP measured on the even-numbered CPT rollouts (`ELP_net_halves[0]`), and every method's
selection is scored on the odd-numbered ones (`ELP_net`, whose route was also chosen on the even
half): scoring the oracle on the numbers it was selected on would credit it with its own winner's
curse. Ties break by snapshot id, so a selection is deterministic.
"""

from __future__ import annotations

import logging
import random

from teachable.core.records import InputError

log = logging.getLogger(__name__)
SELECTION_METHODS = ("random", "entropy", "predictor", "oracle")


class SelectionError(InputError):
    """A selection the inputs cannot make (a budget beyond the pool, a snapshot without a
    prediction): one line, exit code 2 (`teachable.stage.run`)."""


def check_budget(pool_size: int, k: int) -> None:
    """K must fit the pool: cut to the pool, every method would pick the whole pool and compare
    nothing."""
    if k > pool_size:
        raise SelectionError(
            f"select.budget is {k} but the training pool has only {pool_size} snapshots "
            f"(train side of the split): set select.budget below {pool_size}"
        )
    if k == pool_size:
        log.warning(
            "select.budget %d is the whole training pool: every method selects the same snapshots",
            k,
        )


def check_predictions(
    pool: list[dict], predicted: dict[str, float], source: str = "the predictions"
) -> None:
    missing = sorted(r["snapshot_id"] for r in pool if r["snapshot_id"] not in predicted)
    if missing:
        shown = ", ".join(missing[:10]) + (
            f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        )
        raise SelectionError(
            f"{source} has no predicted ELP for {len(missing)} training snapshot(s): "
            f"{shown}; it was made from other snapshots: run `dvc repro predictor`"
        )


def select(
    records: list[dict],
    method: str,
    k: int,
    seed: int,
    predicted: dict[str, float] | None = None,
    source: str = "the predictions",
) -> list[dict]:
    """K snapshots of `records` by `method`; `predicted` (from `source`, named in errors) for the
    predictor."""
    pool = sorted(records, key=lambda r: r["snapshot_id"])
    check_budget(len(pool), k)
    if method == "random":
        return random.Random(seed).sample(pool, k)
    if method == "entropy":
        score = lambda r: r["U"]  # noqa: E731
    elif method == "oracle":
        # (selected on one half, scored on the other)
        score = lambda r: r["cpt"]["ELP_net_halves"][0]  # noqa: E731
    elif method == "predictor":
        if predicted is None:
            raise SelectionError("the predictor method needs predicted ELP per snapshot")
        check_predictions(pool, predicted, source)
        score = lambda r: predicted[r["snapshot_id"]]  # noqa: E731
    else:
        raise SelectionError(f"unknown selection method {method!r}; known: {SELECTION_METHODS}")
    return sorted(pool, key=lambda r: -score(r))[:k]  # stable: equal scores keep snapshot-id order


def held_out_elp(snapshots: list[dict]) -> float | None:
    """Mean ELP of a selection on the CPT rollouts no method selected on (the odd half)."""
    return (
        round(sum(r["cpt"]["ELP_net"] for r in snapshots) / len(snapshots), 6)
        if snapshots
        else None
    )
