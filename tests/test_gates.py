"""Gates as tests: under a simulated null each passes with probability at most alpha; under a planted effect of
the size the gate says it can detect it passes with probability about its stated power."""

import numpy as np
import pytest

from teachable import gates

ALPHA = 0.05
FAST = 999  # permutations per simulated run (the stage uses 9999)


def _pass_rate(make, gate, runs=300):
    return np.mean([gate(*make(np.random.default_rng(i)))["status"] == gates.PASS for i in range(runs)])


def _correlated(n, rho):
    def make(rng):
        z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
        return z[:, 0], z[:, 1]
    return make


def test_cpt_validity_passes_at_most_alpha_under_the_null():
    rate = _pass_rate(_correlated(40, 0.0), lambda x, y: gates.cpt_validity(x, y, 1.0, 1.0, ALPHA, 0.3, 0, FAST))
    assert rate <= ALPHA + 2.5 * np.sqrt(ALPHA * (1 - ALPHA) / 300), rate


def test_cpt_validity_has_its_stated_power_at_the_n_it_asks_for():
    n = gates.correlation_n_needed(0.4, ALPHA)
    assert 35 < n < 45  # Fisher z with the Spearman variance factor: 1.06 * (2.486 / atanh(0.4))^2 + 3
    rate = _pass_rate(_correlated(n, 0.4), lambda x, y: gates.cpt_validity(x, y, 1.0, 1.0, ALPHA, 0.4, 0, FAST))
    assert rate >= 0.8 - 2.5 * np.sqrt(0.16 / 300), rate
    assert gates.correlation_power(0.4, n, ALPHA) == pytest.approx(0.8, abs=0.02)


def test_cpt_validity_fails_only_when_the_data_rule_out_the_target_and_is_inconclusive_between():
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    strong_negative = gates.cpt_validity(x, -x + rng.normal(0, 0.5, 200), 1.0, 1.0, ALPHA, 0.3, seed=0)
    assert strong_negative["status"] == gates.FAIL and strong_negative["ci"][1] < 0.3
    elp, gain = list(range(8)), [3, 7, 0, 5, 1, 6, 2, 4]  # rho 0.05 on 8 pairs: decides nothing
    few = gates.cpt_validity(elp, gain, 1.0, 1.0, ALPHA, 0.3, seed=0)
    assert few["status"] == gates.INCONCLUSIVE and few["n_needed"] > 8 and few["power"] < 0.8
    # unreliable measures hide a real correlation: the target the data can show shrinks, the n needed grows
    noisy = gates.cpt_validity(elp, gain, 0.25, 0.25, ALPHA, 0.3, seed=0)
    assert noisy["visible_target"] == pytest.approx(0.075) and noisy["n_needed"] > 1000
    assert gates.cpt_validity([0.1] * 10, list(range(10)), 1.0, 1.0, ALPHA, 0.3, seed=0)["status"] == \
        gates.NOT_APPLICABLE


def test_q1_beats_q2_passes_at_most_alpha_under_the_null_and_detects_a_planted_effect():
    null = lambda rng: (rng.normal(0, 0.3, 25), rng.normal(0, 0.3, 25))
    rate = _pass_rate(null, lambda a, b: gates.q1_beats_q2(a, b, ALPHA, 0, FAST))
    assert rate <= ALPHA + 2.5 * np.sqrt(ALPHA * (1 - ALPHA) / 300), rate
    effect = gates.min_detectable_difference(0.3 * np.sqrt(2 / 25), ALPHA, df=48)  # what the gate reports here
    verdict = gates.q1_beats_q2(*null(np.random.default_rng(0)), ALPHA, seed=0)
    assert verdict["min_detectable_difference"] == pytest.approx(effect, rel=0.25)  # from the sample's spread
    planted = lambda rng: (rng.normal(effect, 0.3, 25), rng.normal(0, 0.3, 25))
    rate = _pass_rate(planted, lambda a, b: gates.q1_beats_q2(a, b, ALPHA, 0, FAST), runs=400)
    assert rate >= 0.8 - 2.5 * np.sqrt(0.16 / 400), rate


def test_split_half_reliability_on_known_noise():
    rng = np.random.default_rng(0)
    true = rng.normal(size=2000)
    a, b = true + rng.normal(0, 1, 2000), true + rng.normal(0, 1, 2000)  # each half: reliability 0.5
    assert gates.split_half_reliability(a, b, step_up=False) == pytest.approx(0.5, abs=0.05)
    assert gates.split_half_reliability(a, b, step_up=True) == pytest.approx(2 / 3, abs=0.05)
    assert gates.split_half_reliability([1, 1, 1], [1, 2, 3], step_up=True) is None
