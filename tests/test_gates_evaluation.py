"""Phase 3 and 5 gates as tests: under a simulated null each passes with probability at most alpha (with a binomial
tolerance), and under a planted effect of the size the gate reports as detectable it passes about 80% of the time.

Outcomes are simulated as a paired evaluation does them: every model runs the same items with the same sample
seeds, so a model's outcome on an item shares its random number with the base's half of the time."""

import numpy as np
import pytest

from teachable.gates import FAIL, PASS
from teachable.gates import evaluation as gates
from teachable.gates.paired import compare, success_rate

ALPHA, MIN_EFFECT, RUNS = 0.05, 0.05, 300
TOLERANCE = 2.5 * np.sqrt(ALPHA * (1 - ALPHA) / RUNS)


def outcomes(rng, shared, p, seeds=1, rollouts=1, share=0.5):
    """(seeds, items, rollouts) successes with success probability p per item; each draw reuses the item's shared
    uniform with probability `share` (common random numbers), else a fresh one."""
    n = shared.shape[0]
    u = np.where(rng.random((seeds, n, rollouts)) < share, shared[None, :, None], rng.random((seeds, n, rollouts)))
    return (u < np.broadcast_to(p, (n,))[None, :, None]).astype(float)


def rate(results):
    return np.mean([r["status"] == PASS for r in results])


def test_paired_compare_is_exact_for_one_seed_and_normal_with_seeds():
    rng = np.random.default_rng(0)
    shared = rng.random(200)
    a, b = outcomes(rng, shared, 0.5), outcomes(rng, shared, 0.3)
    exact = compare(a, b)
    assert exact["method"] == "tango_mcnemar" and exact["ci"][0] < exact["delta"] < exact["ci"][1]
    seeded = compare(outcomes(rng, shared, 0.5, seeds=3), b)
    assert seeded["method"] == "normal_items_and_seeds" and seeded["ci"][0] > 0
    with pytest.raises(ValueError, match="different items"):
        compare(a[:, :10], b)
    rate_ = success_rate(a)
    assert rate_["ci"][0] < rate_["success"] < rate_["ci"][1]


def _gain_run(rng, n_tasks, effect, n_models=10, seeds=2):
    shared = rng.random(n_tasks)
    base = outcomes(rng, shared, 0.3)
    models = {f"m{i}": outcomes(rng, shared, 0.3 + effect, seeds) for i in range(n_models)}
    return gates.end_to_end_gain({m: a[:, 0::2] for m, a in models.items()}, base[:, 0::2],
                                 {m: a[:, 1::2] for m, a in models.items()}, base[:, 1::2], ALPHA, MIN_EFFECT)


def test_end_to_end_gain_is_not_the_max_of_many_deltas():
    """Ten models with no effect: the old gate (max delta > 0) passes almost always; this one at most alpha."""
    rng = np.random.default_rng(1)
    results = [_gain_run(rng, 200, 0.0) for _ in range(RUNS)]
    assert rate(results) <= ALPHA + TOLERANCE
    assert np.mean([r["validation_delta"] > 0 for r in results]) > 0.75  # what the max of ten looks like


def test_end_to_end_gain_detects_the_effect_it_says_it_can():
    rng = np.random.default_rng(2)
    effect = np.median([_gain_run(rng, 200, 0.0)["min_detectable"] for _ in range(20)])
    results = [_gain_run(rng, 200, effect) for _ in range(RUNS)]
    assert rate(results) >= 0.7
    big = _gain_run(rng, 200, -0.25)
    assert big["status"] == FAIL and big["ci"][1] < MIN_EFFECT


def _retention_run(rng, n, delta, n_models=3):
    shared = rng.random(n)
    base = outcomes(rng, shared, 0.7)
    models = {f"m{i}": outcomes(rng, shared, 0.7 + delta, seeds=2) for i in range(n_models)}
    return gates.non_inferiority(models, base, ALPHA, 0.03)


def test_retention_non_inferiority_passes_at_most_alpha_at_the_margin():
    """Every model loses exactly the margin: non-inferiority must not be declared (old gate: min delta > -3%
    could never pass at n = 50 when nothing was lost, and passed on luck here)."""
    rng = np.random.default_rng(3)
    assert rate([_retention_run(rng, 200, -0.03, n_models=1) for _ in range(RUNS)]) <= ALPHA + TOLERANCE


def test_retention_passes_at_the_n_it_asks_for_when_nothing_is_lost():
    rng = np.random.default_rng(4)
    small = _retention_run(rng, 40, 0.0, n_models=1)
    assert small["n_needed"] > 40
    results = [_retention_run(rng, small["n_needed"], 0.0, n_models=1) for _ in range(100)]
    assert rate(results) >= 0.7
    lost = _retention_run(rng, 400, -0.3)
    assert lost["status"] == FAIL and lost["n_inferior"] == 3


def _formats_run(rng, n, effects, contrast_too=False):
    per_quadrant = {}
    for q, effect in effects.items():
        shared = rng.random(n)
        per_quadrant[q] = {"demo": outcomes(rng, shared, 0.3, seeds=2),
                           "hint": outcomes(rng, shared, 0.3 + effect, seeds=2),
                           "contrast": outcomes(rng, shared, 0.3 + effect * contrast_too, seeds=2)}
    return gates.supervision_differentiation(per_quadrant, ALPHA, MIN_EFFECT)


def test_supervision_differentiation_under_the_null_and_with_planted_effects():
    rng = np.random.default_rng(5)
    null = [_formats_run(rng, 60, dict.fromkeys(["Q1", "Q2", "Q3", "Q4"], 0.0)) for _ in range(RUNS)]
    assert rate(null) <= ALPHA + TOLERANCE
    effect = float(np.median([r["min_detectable"] for r in null[:20]]))
    planted = [_formats_run(rng, 60, dict.fromkeys(["Q1", "Q2", "Q3", "Q4"], effect)) for _ in range(100)]
    assert rate(planted) >= 0.8
    assert all(r["per_quadrant"]["Q1"]["best_format"] in ("demo", "hint") for r in planted)
    worse = _formats_run(rng, 400, dict.fromkeys(["Q1", "Q2", "Q3", "Q4"], -0.2), contrast_too=True)
    assert worse["status"] == FAIL and worse["value"] == 0


def _transfer_run(rng, n_per_quadrant, diagonal_effect, n_resamples=199):
    quadrants = ["Q1", "Q2", "Q3", "Q4"]
    labels = [q for q in quadrants for _ in range(n_per_quadrant)]
    shared = rng.random(len(labels))
    base = outcomes(rng, shared, 0.3)
    cells = {}
    for q in quadrants:
        p = 0.35 + diagonal_effect * (np.asarray(labels) == q)
        for fmt in ("demo", "hint"):
            cells[f"{q}-{fmt}"] = (q, outcomes(rng, shared, p, seeds=2))
    return gates.transfer_diagonal(cells, base, labels, ALPHA, MIN_EFFECT, n_resamples, int(rng.integers(1 << 30)))


def test_transfer_diagonal_under_the_null_and_with_a_planted_diagonal():
    rng = np.random.default_rng(6)
    null = [_transfer_run(rng, 20, 0.0) for _ in range(RUNS)]
    assert rate(null) <= ALPHA + TOLERANCE
    effect = float(np.median([r["min_detectable"] for r in null[:20]]))
    assert rate([_transfer_run(rng, 20, effect) for _ in range(200)]) >= 0.7
    strong = _transfer_run(rng, 20, 0.4)
    assert strong["status"] == PASS and strong["diagonal_mean"] > strong["off_diagonal_mean"]


def _ordering_run(rng, n, step):
    shared = rng.random(n)
    models = {m: outcomes(rng, shared, 0.3 + step * i, seeds=2)
              for i, m in enumerate(["random", "entropy", "predictor"])}
    return gates.ordering(models, ["predictor", "entropy", "random"], ALPHA, MIN_EFFECT)


def test_selection_ordering_is_paired_comparisons_with_holm():
    rng = np.random.default_rng(7)
    null = [_ordering_run(rng, 100, 0.0) for _ in range(RUNS)]
    assert rate(null) <= ALPHA + TOLERANCE
    effect = float(np.median([r["min_detectable"] for r in null[:20]]))
    assert rate([_ordering_run(rng, 100, effect) for _ in range(100)]) >= 0.75
    reversed_ = _ordering_run(rng, 400, -0.15)
    assert reversed_["status"] == FAIL and set(reversed_["comparisons"]) == {"predictor>entropy", "entropy>random"}
