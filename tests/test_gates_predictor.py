"""Phase 4 gates as tests: under a simulated null each passes with probability at most alpha; under
a planted effect of the size the gate reports as detectable (`min_detectable`) it passes with
probability about 0.8. The data are clustered by task like the cross-validation's (5 snapshots a
task, a task effect), and the bootstrap resamples tasks."""

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from teachable.gates import FAIL, INCONCLUSIVE, NOT_APPLICABLE, PASS
from teachable.gates.predictor import (
    accuracy_lift,
    beats_entropy,
    cluster_weights,
    majority_baseline,
    r2_above_target,
    u_threshold_baseline,
    weighted_ndcg,
)
from teachable.labeling.quadrants import QUADRANTS, quadrant

ALPHA, FAST, RUNS = 0.05, 299, 300  # the stage uses gates.n_resamples = 4999
KS = [5, 10, 20, 50]
Q1, Q2, Q3, Q4 = QUADRANTS
NAMES = np.array([[Q3, Q4], [Q2, Q1]], dtype=object)  # [high U][high L]


def null_ceiling(runs: int = RUNS) -> float:
    return ALPHA + 2.5 * np.sqrt(ALPHA * (1 - ALPHA) / runs)


def power_floor(runs: int) -> float:
    return 0.8 - 2.5 * np.sqrt(0.8 * 0.2 / runs)


def tasks(n_tasks: int = 40, per_task: int = 5) -> np.ndarray:
    return np.repeat(np.arange(n_tasks), per_task)


def r2_data(rng, r2: float, task_share: float = 0.3):
    """y = x + e with x clustered by task; the fixed predictor x has population R2 exactly `r2`."""
    g = tasks()
    x = rng.normal(0, np.sqrt(task_share), g.max() + 1)[g] + rng.normal(
        0, np.sqrt(1 - task_share), len(g)
    )
    return x + rng.normal(0, np.sqrt(1 / r2 - 1), len(g)), x, g


def quadrant_data(rng, lift: float):
    """True quadrants with the U side a coin and the L side high with a task-level chance around 0.6
    (so the U-threshold baseline, right exactly when L is high, scores ~0.6 and the majority
    quadrant ~0.3). The predictor gets U right and L right with its own task-level chance, `lift`
    above the baseline's: at lift 0 the two methods' per-task correct counts are exchangeable."""
    g = tasks()
    n_tasks, n = g.max() + 1, len(g)
    high_u = rng.random(n) < 0.5
    high_l = rng.random(n) < rng.uniform(0.45, 0.75, n_tasks)[g]
    right = rng.random(n) < rng.uniform(0.45, 0.75, n_tasks)[g] + lift
    return (
        NAMES[high_u.astype(int), high_l.astype(int)],
        NAMES[high_u.astype(int), np.where(right, high_l, ~high_l).astype(int)],
        g,
    )


def ranking_data(rng, predictor_noise: float, entropy_noise: float = 1.0):
    """ELP_net clustered by task; each method ranks by ELP_net plus its own noise (equal noise: the
    null)."""
    g = tasks()
    elp = 0.3 * rng.normal(0, 1, g.max() + 1)[g] + rng.normal(0, 1, len(g))
    return (
        elp,
        elp + rng.normal(0, predictor_noise, len(g)),
        elp + rng.normal(0, entropy_noise, len(g)),
        g,
    )


def simulate(make, gate, runs: int = RUNS) -> list[dict]:
    return [gate(*make(np.random.default_rng(i)), i) for i in range(runs)]


def pass_rate(verdicts: list[dict]) -> float:
    return float(np.mean([v["status"] == PASS for v in verdicts]))


# ---- R2 against its target


def r2_gate(y, yhat, g, seed):
    return r2_above_target(y, yhat, g, 0.6, ALPHA, seed, FAST)


@pytest.mark.heavy
def test_r2_passes_at_most_alpha_at_the_threshold_and_has_its_power_at_min_detectable():
    null = simulate(lambda rng: r2_data(rng, 0.6), r2_gate)
    assert pass_rate(null) <= null_ceiling(), pass_rate(null)
    margin = float(np.median([v["min_detectable"] for v in null]))
    assert 0.02 < margin < 0.3
    planted = simulate(lambda rng: r2_data(rng, 0.6 + margin), r2_gate)
    assert pass_rate(planted) >= power_floor(RUNS), pass_rate(planted)


def test_r2_verdict_fields_and_outcomes():
    y, yhat, g = r2_data(np.random.default_rng(0), 0.9)
    good = r2_gate(y, yhat, g, 0)
    assert (
        good["status"] == PASS
        and good["ci"][0] > 0.6
        and good["threshold"] == 0.6
        and good["n"] == 200
    )
    assert good["value"] == pytest.approx(
        1 - np.sum((y - yhat) ** 2) / np.sum((y - y.mean()) ** 2), abs=1e-6
    )
    assert (
        good["ci"][0] <= good["value"] <= good["ci"][1]
        and good["p_value"] < ALPHA
        and good["n_tasks"] == 40
    )
    assert good["half_width"] == pytest.approx((good["ci"][1] - good["ci"][0]) / 2, abs=1e-6)
    assert good["n_needed"] is None
    bad = r2_gate(*r2_data(np.random.default_rng(0), 0.2), 0)
    assert bad["status"] == FAIL and bad["ci"][1] <= 0.6
    few = r2_gate(*(a[:40] for a in r2_data(np.random.default_rng(2), 0.65)), 0)  # 8 tasks
    assert (
        few["status"] == INCONCLUSIVE and few["ci"][0] < 0.6 < few["ci"][1] and few["n_needed"] > 40
    )
    assert r2_gate(np.ones(10), np.ones(10), tasks(2), 0)["status"] == NOT_APPLICABLE
    assert r2_gate(y[:5], yhat[:5], g[:5], 0)["status"] == NOT_APPLICABLE  # one task


def test_cluster_weights_draw_as_many_tasks_as_there_are():
    weights = cluster_weights(7, 50, seed=1)
    assert weights.shape == (50, 7) and (weights.sum(axis=1) == 7).all()
    assert np.array_equal(weights, cluster_weights(7, 50, seed=1))


# ---- quadrant accuracy over the baselines


def accuracy_gate(truth, predicted, g, seed):
    return accuracy_lift(truth, predicted, g, ALPHA, seed, 0.7, FAST)


def test_u_threshold_baseline_by_hand():
    """Records placed by the labeling's own rule at a known U cut: the baseline keeps each record's
    true U side (U above the cut) and says the majority L side (here low: 2 of 6 high)."""
    cut = {"U": 1.0, "L": 0.1, "undetermined": "point"}
    rows = [(1.3, 0.5), (1.2, 0.0), (1.1, 0.0), (0.4, 0.0), (0.9, 0.4), (1.0, 0.0)]  # U, L_local
    records = [
        {"U": u, "leverage": {"L_local": lev, "decision_ci": [lev - 0.01, lev + 0.01]}}
        for u, lev in rows
    ]
    for r in records:
        r["quadrant"] = quadrant(r, cut)
    truth = [r["quadrant"] for r in records]
    assert truth == [Q1, Q2, Q2, Q3, Q4, Q3]
    baseline = u_threshold_baseline(truth)
    assert list(baseline) == [Q2, Q2, Q2, Q3, Q3, Q3]
    # the true U, thresholded
    assert [b in (Q1, Q2) for b in baseline] == [r["U"] > cut["U"] for r in records]
    assert list(majority_baseline(truth)) == [Q2] * 6  # Q2 and Q3 tie at 2: the first name
    # a majority of high L sides flips the L half; a tie says low
    assert list(u_threshold_baseline([Q1, Q4, Q2])) == [Q1, Q4, Q1]
    assert list(u_threshold_baseline([Q1, Q3])) == [Q2, Q3]
    with pytest.raises(ValueError, match="unknown quadrant"):
        u_threshold_baseline(["Q5"])

    predicted = [Q1, Q2, Q2, Q3, Q3, Q3]  # 5 of 6
    verdict = accuracy_lift(truth, predicted, ["a", "a", "b", "b", "c", "c"], ALPHA, 0, 0.7, FAST)
    assert verdict["baseline_U_threshold"] == pytest.approx(4 / 6, abs=1e-6)
    assert verdict["baseline_majority"] == pytest.approx(2 / 6, abs=1e-6)
    assert verdict["best_baseline"] == "U_threshold" and verdict["accuracy"] == pytest.approx(
        5 / 6, abs=1e-6
    )
    assert verdict["value"] == pytest.approx(1 / 6, abs=1e-6) and verdict["target_accuracy"] == 0.7
    # three tasks, 8 sign patterns: the exact sign-flip p of the one task that differs (+1) is 4 / 8
    assert verdict["p_vs_U_threshold"] == pytest.approx(0.5) and verdict["status"] == INCONCLUSIVE
    assert len(verdict["accuracy_ci"]) == 2


@pytest.mark.heavy
def test_accuracy_lift_passes_at_most_alpha_under_the_null_and_has_its_power_at_min_detectable():
    null = simulate(lambda rng: quadrant_data(rng, 0.0), accuracy_gate)
    assert pass_rate(null) <= null_ceiling(), pass_rate(null)
    assert all(v["best_baseline"] == "U_threshold" for v in null)
    lift = float(np.median([v["min_detectable"] for v in null]))
    assert 0.03 < lift < 0.25
    planted = simulate(lambda rng: quadrant_data(rng, lift), accuracy_gate, runs=400)
    assert pass_rate(planted) >= power_floor(400), pass_rate(planted)


def test_the_reviewed_case_a_point_estimate_over_the_target_that_does_not_beat_the_u_baseline():
    """An accuracy above the seeds' 0.7 is no pass when thresholding the true U with the majority L
    side does as well: the gate compares with the baseline, not the target."""
    rng = np.random.default_rng(7)
    g = tasks(60)
    high_u, high_l = rng.random(len(g)) < 0.5, rng.random(len(g)) < 0.75
    truth = NAMES[high_u.astype(int), high_l.astype(int)]
    right = rng.random(len(g)) < 0.74  # the predictor: U right, L right 74% of the time
    predicted = NAMES[high_u.astype(int), np.where(right, high_l, ~high_l).astype(int)]
    verdict = accuracy_gate(truth, predicted, g, 0)
    assert (
        verdict["accuracy"] > 0.7 and verdict["baseline_U_threshold"] >= verdict["accuracy"] - 0.03
    )
    assert verdict["status"] != PASS and verdict["p_value"] >= ALPHA
    # U side always wrong
    worse = accuracy_gate(truth, NAMES[(~high_u).astype(int), high_l.astype(int)], g, 0)
    assert worse["status"] == FAIL and worse["ci"][1] <= 0 and worse["n_needed"] is None
    assert accuracy_gate(truth[:5], predicted[:5], g[:5], 0)["status"] == NOT_APPLICABLE


# ---- NDCG@K over entropy


def ranking_gate(elp, predicted, uncertainty, g, seed):
    return beats_entropy(elp, predicted, uncertainty, g, KS, ALPHA, seed, FAST)


def test_weighted_ndcg_is_sklearns_on_the_repeated_items():
    rng = np.random.default_rng(0)
    for trial in range(100):
        n = int(rng.integers(2, 25))
        gains = rng.choice([0.0, 0.0, 0.5, 1.0], n)
        # ties, and none
        scores = rng.choice([0.0, 1.0, 2.5], n) if trial % 2 else rng.normal(size=n)
        counts = rng.integers(0, 3, n)
        k = int(rng.integers(1, n + 3))
        if counts.sum() < 2:
            continue
        expected = ndcg_score(np.repeat(gains, counts)[None], np.repeat(scores, counts)[None], k=k)
        assert weighted_ndcg(gains, scores, k, counts[None])[0] == pytest.approx(
            expected, abs=1e-12
        )


@pytest.mark.heavy
def test_beats_entropy_passes_at_most_alpha_under_the_null_and_has_its_power_at_min_detectable():
    null = simulate(lambda rng: ranking_data(rng, 1.0), ranking_gate)
    assert pass_rate(null) <= null_ceiling(), pass_rate(null)
    assert all(v["k"] == 50 for v in null)
    # a predictor with 60% of entropy's noise: its mean NDCG@50 lift is the size the verdicts on
    # these data say they detect (the standard error, so min_detectable, depends on the methods'
    # noise: read it where planted)
    planted = simulate(lambda rng: ranking_data(rng, 0.6), ranking_gate)
    detectable = float(np.median([v["min_detectable"] for v in planted]))
    mean_lift = float(np.mean([v["value"] for v in planted]))
    assert detectable <= mean_lift <= 1.2 * detectable, (detectable, mean_lift)
    assert pass_rate(planted) >= power_floor(RUNS), pass_rate(planted)


def test_beats_entropy_verdict_fields_and_outcomes():
    elp, predicted, uncertainty, g = ranking_data(np.random.default_rng(1), 0.2)
    good = ranking_gate(elp, predicted, uncertainty, g, 0)
    assert (
        good["status"] == PASS and good["k"] == 50 and good["n_needed"] is None and "k_rule" in good
    )
    gains = np.maximum(elp, 0)
    assert good["ndcg_predictor"] == pytest.approx(
        ndcg_score(gains[None], predicted[None], k=50), abs=1e-6
    )
    assert good["ndcg_entropy"] == pytest.approx(
        ndcg_score(gains[None], uncertainty[None], k=50), abs=1e-6
    )
    assert good["value"] == pytest.approx(good["ndcg_predictor"] - good["ndcg_entropy"], abs=1e-5)
    swapped = ranking_gate(elp, uncertainty, predicted, g, 0)
    assert swapped["status"] == FAIL and swapped["ci"][1] <= 0
    small = beats_entropy(elp[:30], predicted[:30], uncertainty[:30], g[:30], KS, ALPHA, 0, FAST)
    assert small["k"] == 20  # the largest K not above 30 snapshots
    assert (
        beats_entropy(elp[:4], predicted[:4], uncertainty[:4], g[:4], KS, ALPHA, 0, FAST)["status"]
        == NOT_APPLICABLE
    )  # no K <= 4
    # no gain > 0
    assert ranking_gate(-np.abs(elp), predicted, uncertainty, g, 0)["status"] == NOT_APPLICABLE
