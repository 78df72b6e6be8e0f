"""The posterior stopping rule (`label.stopping: posterior`, `teachable.labeling.posterior`): its
prior fit, its posterior, its calibration under the prior it fits, and its records in the pipeline's
labeling (chunking-free)."""

import json

import numpy as np
import pytest

from teachable.core.params import LabelParams
from teachable.labeling.label import label_chunk, label_snapshots
from teachable.labeling.posterior import (
    CONCENTRATION_CAP,
    Prior,
    dirichlet_difference_above,
    fit_prior,
    log_marginal,
    pair_counts,
    posterior_high,
    posterior_side,
)
from teachable.rollout.engine import RolloutEngine
from teachable.teacher import OracleTeacher
from tests.test_labeling import CoinPolicy, coin_snapshot

# a pilot-like world: most states do not care about the first action
PI0, ALPHA = 0.6, (1.0, 0.6, 3.0)


def draw_world(n: int, rng) -> np.ndarray:
    """n snapshots' true (theta_b, theta_c, theta_r) from the mixture the rule assumes."""
    theta = rng.dirichlet(ALPHA, n)
    null = rng.random(n) < PI0
    theta[null] = [0.0, 0.0, 1.0]
    return theta


def sequential(theta: np.ndarray, rng, level: float, round_size=4, cap=16, threshold=0.1):
    """The posterior rule on simulated pairs: the prior fitted on every first round (as the stage
    does), then rounds until the side is sure or the cap. Returns (sides, pairs spent, prior)."""
    counts = [rng.multinomial(round_size, t) for t in theta]
    prior = fit_prior(counts)
    sides, spent = [], []
    for t, c in zip(theta, counts):
        n = round_size
        while True:
            side = posterior_side(posterior_high(tuple(c), None, threshold, prior), level)
            if side != "undetermined" or n >= cap:
                break
            c = c + rng.multinomial(round_size, t)
            n += round_size
        sides.append(side)
        spent.append(n)
    return sides, np.array(spent), prior


@pytest.mark.heavy
def test_decided_sides_are_wrong_at_about_the_stopping_level_with_the_fitted_prior():
    """Calibration: among sides decided before the cap, the share on the wrong side of the true
    L_local is at or below the stopping level (plus simulation noise), with the prior fitted on the
    run's own first rounds; and the rule spends at most half the rollouts of a fixed 16 per arm."""
    rng = np.random.default_rng(7)
    theta = draw_world(3000, rng)
    truth = np.where(theta[:, 0] - theta[:, 1] > 0.1, "high", "low")
    for level in (0.05, 0.1):
        sides, spent, prior = sequential(theta, rng, level)
        decided = np.array([s != "undetermined" for s in sides])
        wrong = np.mean([s != t for s, t, d in zip(sides, truth, decided) if d])
        assert decided.mean() > 0.6
        assert wrong <= level + 0.015, (level, wrong)
        assert spent.mean() <= 8.0, spent.mean()  # <= 0.5 of the fixed design's 16
    assert prior.pi0 == pytest.approx(PI0, abs=0.06)  # the fit finds the mass at "nothing changes"


@pytest.mark.heavy
def test_a_wrong_prior_is_what_breaks_calibration():
    """The rule is as good as its prior: one that believes most states are high (pi0 0.01, Dirichlet
    leaning to b) calls true lows high after one round and is wrong on about a quarter of its
    decided sides, where the fitted prior stays at the level. (Guards against a rule that ignores
    its prior.)"""
    rng = np.random.default_rng(11)
    theta = draw_world(2000, rng)
    truth = np.where(theta[:, 0] - theta[:, 1] > 0.1, "high", "low")
    counts = [rng.multinomial(4, t) for t in theta]
    wrong = {}
    for name, prior in (
        ("fitted", fit_prior(counts)),
        ("wrong", Prior.dirichlet(0.01, (4.0, 0.3, 1.0))),
    ):
        sides = [posterior_side(posterior_high(tuple(c), None, 0.1, prior), 0.05) for c in counts]
        wrong[name] = np.mean([s != t for s, t in zip(sides, truth) if s != "undetermined"])
    assert wrong["fitted"] <= 0.065 and wrong["wrong"] > 0.15, wrong


def test_posterior_arithmetic_on_hand_made_cases():
    # theta_b ~ Beta(1, 2) alone when alpha = (1, 1, 1) and s = 0 ... P(theta_b > theta_c) = 1/2 by
    # symmetry
    assert dirichlet_difference_above((1.0, 1.0, 1.0), 0.0) == pytest.approx(0.5, abs=2e-3)
    # theta_b - theta_c > 0.5 under Dirichlet(1, 1, 1): the triangle (.5, 0), (1, 0), (.75, .25),
    # 1/8 of the simplex
    assert dirichlet_difference_above((1.0, 1.0, 1.0), 0.5) == pytest.approx(0.125, abs=2e-3)
    assert dirichlet_difference_above((2.0, 3.0, 4.0), -1.0) == 1.0
    prior = Prior.dirichlet(0.5, (1.0, 1.0, 1.0))
    assert posterior_high((3, 0, 1), None, 0.1, prior) > posterior_high((1, 0, 3), None, 0.1, prior)
    assert posterior_high((0, 0, 8), None, 0.1, prior) < posterior_high((0, 0, 2), None, 0.1, prior)
    # with p_match known the threshold on the unmatched difference is t / (1 - p_match): harder to
    # clear
    assert posterior_high((2, 0, 2), 0.5, 0.1, prior) < posterior_high((2, 0, 2), None, 0.1, prior)
    assert pair_counts([1, 0, 1, 1], [0, 1, 1, 0], matched=[False, False, True, False]) == (2, 1, 0)
    assert posterior_side(0.99, 0.05) == "high" and posterior_side(0.01, 0.05) == "low"
    assert posterior_side(0.5, 0.05) == "undetermined"
    # nothing to fit: the default prior, said in the log
    assert fit_prior([[0, 0, 0]]).n_snapshots == 0


def pilot_like_world(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """n snapshots' true theta and known p_match from the split prior the pilot's first rounds
    fitted (pi0 0.05, discordance Beta(0.67, 2.8): J-shaped, most non-null states rarely change
    outcome; direction Beta(5.25, 1.1))."""
    delta = np.where(rng.random(n) < 0.05, 0.0, rng.beta(0.67, 2.8, n))
    rho = rng.beta(5.25, 1.1, n)
    return np.stack([delta * rho, delta * (1 - rho), 1 - delta], axis=1), rng.uniform(0.0, 0.5, n)


def runs_of_the_stage(
    rng, level: float, model: str, runs: int, size=80, round_size=4, cap=16, t=0.1
) -> dict:
    """`runs` labeling runs of `size` snapshots each, as the stage labels them: per rollout the
    student's own draw matches the expert's action with probability p_match (then the pair is one
    episode), the prior fitted on each run's first rounds, rounds until the side is sure or the cap
    (then the point estimate). Returns the share of decided sides on the wrong side of the truth,
    agreement with the truth of the rule and of a fixed `cap` per arm, and the rule's rollouts per
    correct side over the fixed design's."""
    wrong = decided = spent = right = fixed_right = 0
    for _ in range(runs):
        theta, p_match = pilot_like_world(size, rng)
        sequences = []
        for th, pm in zip(theta, p_match):
            matched, cells = rng.random(cap) < pm, rng.choice(3, cap, p=th)
            sequences.append((~matched & (cells == 0), ~matched & (cells == 1), matched))
        counts = lambda seq, n: pair_counts(seq[0][:n], seq[1][:n], seq[2][:n])

        def point_high(seq, pm, n):
            b, c, r = counts(seq, n)
            return b + c + r > 0 and (1 - pm) * (b - c) / (b + c + r) > t

        prior = fit_prior([counts(seq, round_size) for seq in sequences], model)
        for seq, pm, high in zip(
            sequences, p_match, (1 - p_match) * (theta[:, 0] - theta[:, 1]) > t
        ):
            n = round_size
            while (
                side := posterior_side(posterior_high(counts(seq, n), pm, t, prior), level)
            ) == "undetermined" and n < cap:
                n += round_size
            right += (
                (side == "high") if side != "undetermined" else point_high(seq, pm, n)
            ) == high
            fixed_right += point_high(seq, pm, cap) == high
            spent += 2 * n + 1
            if side != "undetermined":
                decided += 1
                wrong += (side == "high") != high
    return {
        "wrong": wrong / decided,
        "agree": right / (runs * size),
        "fixed_agree": fixed_right / (runs * size),
        "ratio": (spent / right) / (runs * size * (2 * cap + 1) / fixed_right),
    }


@pytest.mark.heavy
def test_split_prior_is_calibrated_in_runs_of_pilot_size_where_the_single_dirichlet_is_not():
    """Calibration as the stage meets it: runs of 80 snapshots, each fitting its own prior on its
    first rounds of 4, in a world whose discordance is J-shaped (as the pilot's fit says). The split
    prior's decided sides are wrong at about its level (0.05) or below it (0.2, the pre-specified
    level of benchmarks/RESULTS.md); at 0.2 it spends 0.57 of the fixed 16 per arm's rollouts per
    correct side here (0.50 over 25 runs) at 1 to 1.5 points less agreement with the truth, so this
    world does not show the 0.5 the pilot's snapshots do (guarded at 0.65). The single Dirichlet,
    which cannot be J-shaped beside its point mass, is wrong on about a sixth of the sides it
    decides at level 0.05."""
    split_05 = runs_of_the_stage(np.random.default_rng(3), 0.05, "split", runs=10)
    split_20 = runs_of_the_stage(np.random.default_rng(3), 0.2, "split", runs=10)
    dirichlet_05 = runs_of_the_stage(np.random.default_rng(3), 0.05, "dirichlet", runs=10)
    assert split_05["wrong"] <= 0.05 + 0.025, split_05
    assert split_20["wrong"] <= 0.2, split_20
    assert split_20["ratio"] <= 0.65 and split_20["agree"] >= split_20["fixed_agree"] - 0.03, (
        split_20
    )
    assert dirichlet_05["wrong"] > 0.1, dirichlet_05


# The pilot's first rounds of 4 on its snapshots 0-39 (b, c, r over the unmatched pairs): no
# overdispersion shows
PILOT_FIRST_ROUNDS_0_39 = (
    [(0, 0, 4)] * 11
    + [(0, 0, 3)] * 9
    + [(0, 0, 2)] * 5
    + [(0, 0, 1)] * 3
    + [(1, 0, 3)] * 3
    + [(2, 0, 1)] * 2
    + [(2, 0, 2)] * 2
    + [(0, 1, 3), (0, 1, 2), (1, 0, 2), (0, 0, 0), (1, 1, 2)]
)


def test_the_split_fit_keeps_its_concentration_where_the_unbounded_dirichlet_fit_runs_away():
    """On 40 pilot snapshots the unbounded Dirichlet's fit runs to its bound (every non-null
    snapshot gets the same theta, theta_b - theta_c = 0.16), so one forced win in four pairs calls a
    side high at level 0.05; the split fit keeps each Beta's concentration at most CONCENTRATION_CAP
    and leaves that side open."""
    dirichlet, split = (
        fit_prior(PILOT_FIRST_ROUNDS_0_39, "dirichlet"),
        fit_prior(PILOT_FIRST_ROUNDS_0_39, "split"),
    )
    assert sum(dirichlet.discordance) > 500
    assert (
        sum(split.discordance) <= CONCENTRATION_CAP + 1e-6
        and sum(split.direction) <= CONCENTRATION_CAP + 1e-6
    )
    assert posterior_side(posterior_high((1, 0, 3), 0.0, 0.1, dirichlet), 0.05) == "high"
    assert posterior_side(posterior_high((1, 0, 3), 0.0, 0.1, split), 0.05) == "undetermined"
    # the cap costs next to nothing in fit
    assert split.log_likelihood >= dirichlet.log_likelihood - 1.0


def test_the_dirichlet_is_the_split_form_with_tied_numbers():
    """Prior.dirichlet(pi0, alpha) in the split form gives the Dirichlet-multinomial marginal and
    the Dirichlet's P(theta_b - theta_c > s) (here integrated the other way: over theta_b's
    quantiles)."""
    from scipy.special import betainc, betaincinv, gammaln

    alpha, x = np.array([2.7, 0.6, 7.8]), np.array([3.0, 1.0, 5.0])
    prior = Prior.dirichlet(0.3, alpha)
    direct = (
        gammaln(10)
        - gammaln(x + 1).sum()
        + gammaln(alpha.sum())
        - gammaln(alpha.sum() + 9)
        + (gammaln(x + alpha) - gammaln(alpha)).sum()
    )
    assert log_marginal([x], prior.pi0, prior.discordance, prior.direction)[0] == pytest.approx(
        np.log(0.7) + direct
    )
    a = alpha + x
    u = (np.arange(4096) + 0.5) / 4096
    theta_b = betaincinv(a[0], a[1] + a[2], u)
    other_way = np.mean(betainc(a[1], a[2], np.clip((theta_b - 0.2) / (1 - theta_b), 0, 1)))
    assert posterior_high(tuple(x), None, 0.2, prior) == pytest.approx(other_way, abs=1e-3)


def label_params(**kw) -> LabelParams:
    return LabelParams.defaults(
        **{
            "horizon": 2,
            "round_size": 4,
            "max_rollouts": 16,
            "cpt_rollouts": 4,
            "stopping": "posterior",
            **kw,
        }
    )


@pytest.mark.heavy
def test_pipeline_records_do_not_depend_on_chunking_and_carry_the_posterior_side():
    """40 snapshots of three kinds of student, labeled as the stage does (every first round, the
    prior fitted once, the rounds after) in chunks of 7 and of 40: the same records. Sides come from
    the posterior; clear snapshots stop early, and the CPT arms get their `cpt_rollouts` whatever
    the leverage arms do."""
    snapshots = [coin_snapshot(i) for i in range(40)]
    policy = CoinPolicy(q=0.05)
    engine = lambda: RolloutEngine(
        policy, env_name="coin", max_steps=2, history_len=0, batch_size=64, record_steps=False
    )
    runs = [
        label_snapshots(
            snapshots, policy, OracleTeacher(), engine(), label_params(chunk_size=size), 0, 0.1
        )
        for size in (7, 40)
    ]
    (small, prior), (large, _) = runs
    assert json.dumps(small) == json.dumps(large)
    assert prior is not None and prior.n_snapshots == 40
    assert {r["leverage"]["stopping"] for r in small} == {"posterior"}
    assert all(r["leverage"]["side"] == "high" for r in small)  # true L_local 0.9 against 0.1
    assert np.mean([r["rollouts"]["n_per_arm"] for r in small]) < 16
    assert all(r["rollouts"]["n_cpt"] == 4 for r in small)
    interval = label_chunk(
        snapshots, policy, OracleTeacher(), engine(), label_params(stopping="interval"), 0, 0.1
    )
    assert "stopping" not in interval[0]["leverage"]
