"""Phase 5 selection: each method picks what it claims to, deterministically, from training snapshots only."""

import pytest

from teachable.selection import select


def records():
    # U rises with i, true ELP falls with i: entropy and oracle disagree completely
    return [{"snapshot_id": f"s{i:02d}", "U": i / 10, "cpt": {"ELP_net": (9 - i) / 10}} for i in range(10)]


def ids(chosen):
    return [r["snapshot_id"] for r in chosen]


def test_entropy_and_oracle_take_the_top_k_of_their_score():
    assert ids(select(records(), "entropy", 3, seed=0)) == ["s09", "s08", "s07"]
    assert ids(select(records(), "oracle", 3, seed=0)) == ["s00", "s01", "s02"]


def test_predictor_ranks_by_predicted_elp_and_needs_a_prediction_for_every_snapshot():
    predicted = {f"s{i:02d}": float(i % 3) for i in range(10)}
    assert ids(select(records(), "predictor", 3, seed=0, predicted=predicted)) == ["s02", "s05", "s08"]  # ties: id
    with pytest.raises(ValueError, match="no predicted ELP"):
        select(records(), "predictor", 3, seed=0, predicted={"s00": 1.0})


def test_random_is_seeded_and_the_budget_is_capped_by_the_pool():
    assert ids(select(records(), "random", 4, seed=1)) == ids(select(list(reversed(records())), "random", 4, seed=1))
    assert ids(select(records(), "random", 4, seed=1)) != ids(select(records(), "random", 4, seed=2))
    assert len(select(records(), "oracle", 50, seed=0)) == 10
    with pytest.raises(ValueError, match="unknown selection method"):
        select(records(), "vibes", 3, seed=0)
