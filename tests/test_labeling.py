"""Phase 1 estimators against known truth, uncertainty on hand-made distributions, quadrant
boundaries."""

import json
import math
import random

import numpy as np
import pytest

from teachable.core.params import LabelParams, QuadrantParams
from teachable.envs import register_env
from teachable.labeling.estimates import (
    cpt,
    leverage,
    paired_difference,
    rate,
    stratified_difference,
)
from teachable.labeling.label import label_chunk
from teachable.labeling.quadrants import quadrant, summary, thresholds
from teachable.labeling.uncertainty import uncertainty
from teachable.policy.patches import demo_patch, placebo_patch
from teachable.policy.hf import Scores
from teachable.core.records import Snapshot
from teachable.rollout.engine import RolloutEngine
from teachable.teacher import OracleTeacher


class CoinEnv:
    """Each step: 'good' wins at once, 'bad' and 'idle' go on. The expert says 'good'. Success
    probabilities are exact: with h steps left and P(good) = q a step, the student succeeds with
    probability 1 - (1 - q)^h."""

    env_name = "coin"

    def __init__(self, level, max_steps=None):
        self.max_steps = max_steps or 2

    def reset(self, seed):
        self.seed, self.actions, self.history = seed, [], []
        self.mission, self.observation = "win", "a coin"
        return self.observation, {}

    def step(self, action):
        self.history.append({"obs": self.observation, "action": action})
        self.actions.append(action)
        won = action == "good"
        return (
            self.observation,
            float(won),
            won,
            not won and len(self.actions) >= self.max_steps,
            {"success": won},
        )

    step_count = property(lambda self: len(self.actions))
    valid_actions = lambda self: ["good", "bad", "idle"]
    expert_action = lambda self: "good"
    target_hint = lambda self: "The coin is in front of you."
    state = lambda self: {"level": "coin", "seed": self.seed, "actions": list(self.actions)}
    state_hash = lambda self: str(len(self.actions))

    def fork(self):
        import copy

        return copy.deepcopy(self)

    @classmethod
    def restore(cls, state, expected_hash=None, max_steps=None):
        env = cls("coin", max_steps)
        env.reset(state["seed"])
        for a in state["actions"]:
            env.step(a)
        return env


class CoinPolicy:
    """P(good) = q (0.3 by default), or 0.9 when the prompt tells it to do 'good' (unless it ignores
    patches); 'bad' and 'idle' share the rest."""

    name = "coin-student"

    def __init__(self, q=0.3, reads_patches=True):
        self.q, self.reads_patches = q, reads_patches

    def score(self, messages, candidates):
        out = []
        for m, c in zip(messages, candidates):
            q = 0.9 if self.reads_patches and "do 'good'" in m[-1]["content"] else self.q
            out.append(Scores(c, np.log(np.array([q if a == "good" else (1 - q) / 2 for a in c]))))
        return out


register_env("coin", CoinEnv)


def coin_snapshot(i=0, student_action="bad"):
    return Snapshot(
        snapshot_id=f"c{i}",
        env="coin",
        task_id=f"coin-{i}",
        seed=i,
        step_idx=0,
        source="student_failure",
        mission="win",
        history=[],
        obs="a coin",
        valid_actions=["good", "bad", "idle"],
        student_action=student_action,
        state={"level": "coin", "seed": i, "actions": []},
        state_hash="0",
    )


def label(snapshots, policy=None, batch_size=4096, seed=0, threshold=0.1, **params):
    params = {"horizon": 2, "round_size": 8, "max_rollouts": 8, **params}
    params.setdefault("cpt_rollouts", params["max_rollouts"])
    engine = RolloutEngine(
        policy or CoinPolicy(),
        env_name="coin",
        max_steps=2,
        history_len=0,
        batch_size=batch_size,
        record_steps=False,
    )
    return label_chunk(
        snapshots,
        policy or CoinPolicy(),
        OracleTeacher(),
        engine,
        LabelParams.defaults(**params),
        seed,
        threshold,
    )


# two steps left; a patch acts at the first step only
P_STUDENT, P_PATCHED = 1 - 0.7**2, 1 - 0.1 * 0.7


@pytest.mark.heavy
def test_leverage_and_cpt_converge_to_the_true_probabilities():
    (record,) = label([coin_snapshot()], round_size=1500, max_rollouts=1500)
    lev, c = record["leverage"], record["cpt"]
    assert lev["p_student"] == pytest.approx(P_STUDENT, abs=0.04)
    # deterministic: once
    assert lev["p_force"] == 1.0 and lev["p_expert"] == 1.0 and lev["n_expert"] == 1
    assert lev["L_local"] == pytest.approx(1 - P_STUDENT, abs=0.04)
    assert lev["ci"]["student"][0] < P_STUDENT < lev["ci"]["student"][1]
    # the CPT's base arm is the student arm, not a re-run of it
    assert c["p_base"] == lev["p_student"]
    assert c["p_demo"] == pytest.approx(P_PATCHED, abs=0.04)
    assert c["p_contrast"] == pytest.approx(P_PATCHED, abs=0.04)
    assert c["p_hint"] == pytest.approx(P_STUDENT, abs=0.04)
    assert c["p_placebo"] == pytest.approx(P_STUDENT, abs=0.04)
    assert c["ELP_net"] == pytest.approx(P_PATCHED - P_STUDENT, abs=0.06)
    assert c["route_net"] in ("demo", "contrast")
    assert record["U"] == pytest.approx(-(0.3 * math.log(0.3) + 0.7 * math.log(0.35)), abs=1e-5)
    assert record["teacher"]["suggested_action"] == "good"


def test_labels_are_reproducible_and_skips_are_honoured():
    run = lambda **kw: label([coin_snapshot()], seed=3, **kw)[0]
    assert run() == run()
    skipped = run(skip_cpt=True)
    assert "cpt" not in skipped and "leverage" in skipped


@pytest.mark.heavy
def test_a_chunk_labels_each_snapshot_as_alone_whatever_the_chunk_and_batch_size():
    """Many snapshots a chunk, as the pipeline runs: each record equals the one-snapshot chunk's, at
    any batch size. The contrast action is each snapshot's own (it once was the chunk's last
    snapshot's for all)."""
    snapshots = [coin_snapshot(i, ("bad", "idle", None)[i % 3]) for i in range(24)]
    together = label(snapshots, batch_size=64, round_size=4, max_rollouts=16)
    alone = [label([s], batch_size=7, round_size=4, max_rollouts=16)[0] for s in snapshots]
    assert json.dumps(together) == json.dumps(alone)
    assert [r["contrast_action"] for r in together[:2]] == ["bad", "idle"]
    for r in together:
        assert r["contrast_action"] != r["teacher"]["suggested_action"]
        assert r["patches"]["contrast"].startswith(
            f"Teacher: '{r['contrast_action']}' is a mistake"
        )


@pytest.mark.heavy
def test_forced_and_student_rollouts_stay_in_step():
    """A forced first step takes the same draws as a sampled one: where the student's own first draw
    picks the expert's action, its rollout and the forced rollout are the same episode, so they
    never disagree."""
    (record,) = label([coin_snapshot()], round_size=400, max_rollouts=400)
    # student rollout i fails only if both its draws miss 'good'; the forced one always wins at
    # once. Pairs where the student won but the forced arm lost would mean the two arms drew
    # differently.
    lev = record["leverage"]
    assert lev["p_force"] == 1.0 and lev["ci"]["L_local"][1] - lev["ci"]["L_local"][0] < 0.2


@pytest.mark.heavy
def test_intervals_cover_the_true_differences_at_their_nominal_rate():
    """300 snapshots of the coin, 8 rollouts an arm: each 95% interval covers the exact value about
    95% of the time (at least 90% here, so binomial noise over 300 cannot fail a correct
    interval)."""
    records = label([coin_snapshot(i) for i in range(300)], round_size=8, max_rollouts=8)
    truth = {
        "L_local": 1 - P_STUDENT,
        "L_upper": 1 - P_STUDENT,
        "demo": P_PATCHED - P_STUDENT,
        "hint": 0.0,
        "ELP_net": P_PATCHED - P_STUDENT,
    }
    cover = lambda ci, value: ci[0] <= value <= ci[1]
    rates = {
        "L_local": np.mean(
            [cover(r["leverage"]["ci"]["L_local"], truth["L_local"]) for r in records]
        ),
        "L_upper": np.mean(
            [cover(r["leverage"]["ci"]["L_upper"], truth["L_upper"]) for r in records]
        ),
        "demo": np.mean([cover(r["cpt"]["net"]["demo"]["ci"], truth["demo"]) for r in records]),
        "hint": np.mean([cover(r["cpt"]["net"]["hint"]["ci"], truth["hint"]) for r in records]),
    }
    # ELP_net's estimand is the chosen route's true gain: demo and contrast share P_PATCHED, hint
    # has none
    honest = [
        cover(
            r["cpt"]["ELP_net_ci"],
            P_PATCHED - P_STUDENT if r["cpt"]["route_net"] != "hint" else 0.0,
        )
        for r in records
    ]
    rates["ELP_net"] = np.mean(honest)
    assert all(rate >= 0.9 for rate in rates.values()), rates


@pytest.mark.heavy
def test_paired_difference_interval_covers_under_strong_coupling():
    """Pure-function check on simulated pairs sharing one uniform (as arms sharing seeds do),
    several designs."""
    rng = np.random.default_rng(0)
    for p_x_only, p_y_only, n in [
        (0.1, 0.0, 8),
        (0.2, 0.05, 16),
        (0.0, 0.0, 8),
        (0.3, 0.3, 16),
        (0.5, 0.0, 4),
    ]:
        hits = 0
        for _ in range(1000):
            u = rng.random(n)
            both = (u >= p_x_only + p_y_only) & (u < p_x_only + p_y_only + 0.3)
            x, y = (u < p_x_only) | both, ((u >= p_x_only) & (u < p_x_only + p_y_only)) | both
            low, high = paired_difference(x, y)["ci"]
            hits += low <= p_x_only - p_y_only <= high
        assert hits / 1000 >= 0.93, (p_x_only, p_y_only, n, hits)


@pytest.mark.heavy
def test_elp_net_has_no_winners_curse_under_a_null():
    """Arms with the same success rate whose outcomes are not coupled (a patch that changes the
    student's choices but not its chances): the in-sample maximum over three arms is biased up; the
    route chosen on the even rollouts and scored on the odd ones is not."""
    rng = np.random.default_rng(0)
    naive, honest = [], []
    for _ in range(2000):
        arms = {
            arm: list(rng.random(8) < 0.5)
            for arm in ("student", "placebo", "demo", "contrast", "hint")
        }
        c = cpt(arms)
        naive.append(c["ELP_net_naive"])
        honest.append(c["ELP_net"])
    assert np.mean(naive) > 0.1 and abs(np.mean(honest)) < 0.02, (np.mean(naive), np.mean(honest))


def test_arms_that_share_seeds_agree_exactly_where_a_patch_changes_nothing():
    """A student that ignores patches: with common random numbers every CPT arm is the same episode
    as the student's, so every patch-minus-placebo difference is exactly 0, not merely 0 on
    average."""
    records = label([coin_snapshot(i) for i in range(50)], policy=CoinPolicy(reads_patches=False))
    assert {r["cpt"]["ELP_net"] for r in records} == {0.0}
    assert {r["cpt"]["ELP_net_naive"] for r in records} == {0.0}


@pytest.mark.heavy
def test_rounds_stop_once_the_side_is_decided_and_go_on_while_it_straddles():
    # L_local = 0.95^2 = 0.9: clear of a 0.1 threshold within a few rounds
    weak = CoinPolicy(q=0.05)
    clear = label(
        [coin_snapshot(i) for i in range(40)],
        policy=weak,
        round_size=4,
        max_rollouts=32,
        cpt_rollouts=4,
    )
    assert all(r["leverage"]["side"] == "high" for r in clear)
    assert np.mean([r["rollouts"]["n_per_arm"] for r in clear]) <= 12  # the cap is 32
    # a threshold at the true L: the interval keeps straddling it, so most snapshots run to the cap
    close = label(
        [coin_snapshot(i) for i in range(40)],
        round_size=4,
        max_rollouts=16,
        cpt_rollouts=4,
        threshold=1 - P_STUDENT,
    )
    assert np.mean([r["rollouts"]["n_per_arm"] == 16 for r in close]) > 0.5
    assert {r["leverage"]["side"] for r in close} <= {"high", "low", "undetermined"}


@pytest.mark.heavy
def test_sequential_sides_are_wrong_at_most_alpha_of_the_time():
    """True L_local = 0.49 against a threshold of 0.3: over all looks, a snapshot called low is an
    error; the Bonferroni-over-looks decision keeps such errors under alpha = 0.05."""
    records = label(
        [coin_snapshot(i) for i in range(300)],
        round_size=2,
        max_rollouts=16,
        cpt_rollouts=2,
        threshold=0.3,
    )
    wrong = np.mean([r["leverage"]["side"] == "low" for r in records])
    assert wrong <= 0.05, wrong


def test_uncertainty_on_hand_made_distributions():
    even = uncertainty([0.5, 0.5])
    assert even["entropy"] == pytest.approx(math.log(2), abs=1e-6)
    assert (
        even["margin"] == 0
        and even["top_prob"] == 0.5
        and even["normalized_entropy"] == pytest.approx(1)
    )
    sure = uncertainty([0.0, 1.0, 0.0])
    assert sure["entropy"] == 0 and sure["margin"] == 1 and sure["top_prob"] == 1
    skewed = uncertainty([0.6, 0.3, 0.1])
    assert skewed["margin"] == pytest.approx(0.3) and 0 < skewed["normalized_entropy"] < 1


def test_wilson_interval_and_leverage_arithmetic():
    r = rate(7, 10)
    assert (
        r["p"] == 0.7
        and r["ci"][0] == pytest.approx(0.3968, abs=1e-3)
        and r["ci"][1] == pytest.approx(0.8922, abs=1e-3)
    )
    lev = leverage(
        {
            "student": [True, False, False, False],
            "force": [True, True, True, False],
            "expert": [True],
        }
    )
    assert lev["L_local"] == 0.5 and lev["L_upper"] == 0.75
    student_ci = rate(1, 4)["ci"]
    assert lev["ci"]["L_upper"] == pytest.approx([1 - student_ci[1], 1 - student_ci[0]], abs=1e-6)
    both = [True, False] * 4
    c = cpt(
        {
            "student": both,
            "placebo": [True, True, False, False] * 2,
            "demo": [True] * 8,
            "contrast": [False] * 8,
            "hint": [True, True, True, True, False, False, False, False],
        }
    )
    assert c["p_base"] == 0.5 and c["ELP_net_naive"] == 0.5 and c["route_naive"] == "demo"
    # the route is chosen on rollouts 0, 2, 4, 6 (demo 1.0, hint 0.5) and scored on 1, 3, 5, 7
    assert c["route_net"] == "demo" and c["ELP_net"] == 0.5 and c["n_estimation"] == 4
    assert c["net"]["contrast"]["diff"] == -0.5 and c["net"]["contrast"]["ci"][1] < 0


def test_tango_interval_on_hand_made_tables():
    """Values from the score interval's definition: no discordant pair of 4 gives +-(z^2 / (n +
    z^2))."""
    zero = paired_difference([False] * 4, [False] * 4)
    z2 = 1.959964**2
    assert zero["diff"] == 0 and zero["ci"] == pytest.approx(
        [-z2 / (4 + z2), z2 / (4 + z2)], abs=1e-5
    )
    assert paired_difference([True] * 6, [False] * 6)["ci"][0] > 0
    assert paired_difference([True, False, True], [True, False, True])["ci"][0] < 0
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([True], [True, False])


def _labeled(u, ci, l_local=None):
    return {
        "U": u,
        "leverage": {
            "decision_ci": ci,
            "L_local": l_local if l_local is not None else sum(ci) / 2,
            "L_upper": 0.0,
        },
        "cpt": {"ELP_net": 0.1},
    }


def test_quadrant_boundaries_and_undetermined_sides():
    cut = {"U": 1.0, "L": 0.2, "undetermined": "exclude"}
    assert quadrant(_labeled(1.5, [0.3, 0.6]), cut) == "Q1_highU_highL"
    # upper bound at the threshold: low
    assert quadrant(_labeled(1.5, [-0.1, 0.2]), cut) == "Q2_highU_lowL"
    assert quadrant(_labeled(0.5, [-0.2, 0.1]), cut) == "Q3_lowU_lowL"
    assert quadrant(_labeled(0.5, [0.21, 0.5]), cut) == "Q4_lowU_highL"
    assert quadrant(_labeled(1.0, [0.0, 0.1]), cut) == "Q3_lowU_lowL"  # U on the line is low
    assert quadrant(_labeled(1.5, [0.1, 0.4]), cut) is None  # straddles: excluded
    point = {**cut, "undetermined": "point"}
    assert quadrant(_labeled(1.5, [0.1, 0.4], 0.25), point) == "Q1_highU_highL"
    # a point estimate on the line: low
    assert quadrant(_labeled(1.5, [0.1, 0.4], 0.2), point) == "Q2_highU_lowL"


def test_thresholds_quantile_of_u_and_fixed_l():
    records = [
        _labeled(u, ci)
        for u, ci in [(0.1, [-0.1, 0.0]), (0.2, [0.5, 0.9]), (0.9, [0.0, 0.05]), (1.0, [0.3, 0.9])]
    ]
    cut = thresholds(records, QuadrantParams.defaults())
    assert cut["U"] == pytest.approx(0.55) and cut["L"] == 0.1
    for r in records:
        r["quadrant"] = quadrant(r, cut)
    counts = {q: s["count"] for q, s in summary(records).items()}
    assert counts == {
        "Q1_highU_highL": 1,
        "Q2_highU_lowL": 1,
        "Q3_lowU_lowL": 1,
        "Q4_lowU_highL": 1,
    }
    fixed = thresholds(records, QuadrantParams.defaults(U_threshold=0.05, L_threshold=0.95))
    assert (fixed["U"], fixed["L"]) == (0.05, 0.95)


@pytest.mark.parametrize("action", ["go forward", "turn left", "pick up"])
def test_placebo_is_about_as_long_as_the_demo(action):
    demo = demo_patch(action, "The yellow key you need is 3 forward 2 left from you.")
    for seed in range(5):
        placebo = placebo_patch(len(demo), random.Random(seed))
        assert abs(len(placebo) - len(demo)) <= 40 and action not in placebo


@pytest.mark.heavy
def test_match_probability_is_the_rate_at_which_student_draws_pick_the_expert_action(tiny_policy):
    """BabyAI, a stored state, 64 rollouts: the share of student rollouts whose own first action is
    the expert's (the pairs the stratified L_local treats as equal) agrees with the exact p_match
    from the scores."""
    from teachable.envs import make_env
    from teachable.core.records import Snapshot

    env = make_env("babyai", "GoToLocal", 32)
    env.reset(5)
    env.step("turn left")
    snap = Snapshot(
        snapshot_id="b5",
        env="babyai",
        task_id="GoToLocal-5",
        seed=5,
        step_idx=1,
        source="student_failure",
        mission=env.mission,
        history=env.history[-2:],
        obs=env.observation,
        valid_actions=env.valid_actions(),
        student_action="turn left",
        state=env.state(),
        state_hash=env.state_hash(),
    )
    engine = RolloutEngine(tiny_policy, "babyai", 32, 2, 1.0, 64, record_steps=False)
    (record,) = label_chunk(
        [snap],
        tiny_policy,
        OracleTeacher(),
        engine,
        LabelParams.defaults(round_size=64, max_rollouts=64, horizon=4, skip_cpt=True),
        0,
        0.1,
    )
    lev = record["leverage"]
    assert lev["L_local_estimator"] == "stratified"
    assert abs((1 - lev["n_unmatched"] / 64) - lev["p_match"]) < 0.2
    # the matched pairs are one episode by construction: the estimate reads only the unmatched ones
    assert stratified_difference([True, False], [False, False], [True, False], 0.5)["diff"] == 0.0


def babyai_snapshots(policy, n: int) -> list[Snapshot]:
    """`n` failure snapshots of the policy's own BabyAI episodes: prompts of many lengths, as in the
    pipeline."""
    from teachable.core.params import SnapshotParams
    from teachable.rollout.engine import RolloutSpec
    from teachable.rollout.snapshots import failure_snapshots

    episodes = RolloutEngine(policy, max_steps=8).run(
        [RolloutSpec(f"e{i}", "GoToLocal", i, i) for i in range(8)]
    )
    return failure_snapshots(episodes, SnapshotParams.defaults(max_snapshots=n), 2, seed=0)


@pytest.mark.heavy
def test_records_are_byte_identical_whatever_the_chunk_size(pilot_policy):
    """Issue 33: the student's forward passes batched a whole chunk's states, and a batch gives each
    row floats that depend on the other rows, so 7 of 8 pilot records differed in U and action
    probabilities at the 6th decimal between chunks of 16 and of 4. Each snapshot's scoring and
    rollouts now run in batches of its own. (The pilot's student, 12 snapshots, chunks of 2, 4
    and 12.)"""
    from teachable.labeling.label import label_snapshots

    snapshots = babyai_snapshots(pilot_policy, 12)
    assert len(snapshots) == 12
    runs = []
    for size in (2, 4, 12):
        engine = RolloutEngine(pilot_policy, "babyai", 8, 2, 1.0, 64, record_steps=False)
        p = LabelParams.defaults(
            round_size=2, max_rollouts=4, cpt_rollouts=2, horizon=4, chunk_size=size
        )
        runs.append(
            json.dumps(
                label_snapshots(snapshots, pilot_policy, OracleTeacher(), engine, p, 0, 0.1)[0]
            )
        )
    assert runs[0] == runs[1] == runs[2]
