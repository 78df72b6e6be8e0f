"""Phase 5 selection: each method picks what it claims to, deterministically, from training
snapshots only."""

import pytest

from teachable.core.records import InputError
from teachable.evaluation.selection import SELECTION_METHODS, SelectionError, held_out_elp, select


def records():
    # U rises with i, true ELP falls with i: entropy and oracle disagree completely
    return [
        {
            "snapshot_id": f"s{i:02d}",
            "U": i / 10,
            "cpt": {"ELP_net": (9 - i) / 10, "ELP_net_halves": [(9 - i) / 10, (9 - i) / 10]},
        }
        for i in range(10)
    ]


def ids(chosen):
    return [r["snapshot_id"] for r in chosen]


def test_entropy_and_oracle_take_the_top_k_of_their_score():
    assert ids(select(records(), "entropy", 3, seed=0)) == ["s09", "s08", "s07"]
    assert ids(select(records(), "oracle", 3, seed=0)) == ["s00", "s01", "s02"]


def test_predictor_ranks_by_predicted_elp_and_needs_a_prediction_for_every_snapshot():
    predicted = {f"s{i:02d}": float(i % 3) for i in range(10)}
    # ties: id
    assert ids(select(records(), "predictor", 3, seed=0, predicted=predicted)) == [
        "s02",
        "s05",
        "s08",
    ]
    with pytest.raises(
        SelectionError, match=r"oof.csv has no predicted ELP for 9 training snapshot\(s\): s01, s02"
    ):
        select(records(), "predictor", 3, seed=0, predicted={"s00": 1.0}, source="oof.csv")


def test_random_is_seeded_and_a_budget_beyond_the_pool_is_refused():
    assert ids(select(records(), "random", 4, seed=1)) == ids(
        select(list(reversed(records())), "random", 4, seed=1)
    )
    assert ids(select(records(), "random", 4, seed=1)) != ids(
        select(records(), "random", 4, seed=2)
    )
    assert len(select(records(), "oracle", 10, seed=0)) == 10
    for method in SELECTION_METHODS:  # cut to the pool, all four would pick the same snapshots
        with pytest.raises(
            SelectionError, match=r"select.budget is 50 but the training pool has only 10 snapshots"
        ):
            select(records(), method, 50, seed=0, predicted={f"s{i:02d}": 0.0 for i in range(10)})
    assert issubclass(SelectionError, InputError)
    with pytest.raises(ValueError, match="unknown selection method"):
        select(records(), "vibes", 3, seed=0)


def test_the_oracle_is_selected_on_one_half_of_the_rollouts_and_scored_on_the_other():
    """Even half: s09 looks best; odd half (ELP_net): s09 is worst. The oracle takes s09 and its
    held-out ELP says so, instead of crediting it with the half it was chosen on."""
    recs = [
        {
            "snapshot_id": f"s{i:02d}",
            "U": 0.0,
            "cpt": {"ELP_net": (9 - i) / 10, "ELP_net_halves": [i / 10, (9 - i) / 10]},
        }
        for i in range(10)
    ]
    chosen = select(recs, "oracle", 1, seed=0)
    assert ids(chosen) == ["s09"] and held_out_elp(chosen) == 0.0
    assert held_out_elp([]) is None
