"""Phase 1 estimators against known truth, uncertainty on hand-made distributions, quadrant boundaries."""

import math
import random

import numpy as np
import pytest

from teachable.config import LabelParams, QuadrantParams
from teachable.envs import register_env
from teachable.labeling.estimates import cpt, leverage, rate
from teachable.labeling.label import label_chunk
from teachable.labeling.quadrants import quadrant, summary, thresholds
from teachable.labeling.uncertainty import uncertainty
from teachable.patches import demo_patch, placebo_patch
from teachable.policy.hf import Scores
from teachable.records import Snapshot
from teachable.rollout import RolloutEngine
from teachable.teacher import OracleTeacher


class CoinEnv:
    """Each step: 'good' wins at once, 'bad' goes on. The expert says 'good'. Success probabilities are exact."""

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
        return self.observation, float(won), won, not won and len(self.actions) >= self.max_steps, {"success": won}

    step_count = property(lambda self: len(self.actions))
    valid_actions = lambda self: ["good", "bad"]
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
    """P(good) = 0.3, or 0.9 when the prompt tells it to do 'good'."""

    name = "coin-student"

    def score(self, messages, candidates):
        out = []
        for m, c in zip(messages, candidates):
            q = 0.9 if "do 'good'" in m[-1]["content"] else 0.3
            out.append(Scores(c, np.log(np.array([q if a == "good" else 1 - q for a in c]))))
        return out


register_env("coin", CoinEnv)


def coin_snapshot():
    return Snapshot(snapshot_id="c0", env="coin", task_id="coin-7", seed=7, step_idx=0, source="student_failure",
                    mission="win", history=[], obs="a coin", valid_actions=["good", "bad"], student_action="bad",
                    state={"level": "coin", "seed": 7, "actions": []}, state_hash="0")


def test_leverage_and_cpt_converge_to_the_true_probabilities():
    n = 1500
    params = LabelParams(n_student_rollouts=n, n_force_rollouts=n, n_expert_rollouts=50, n_per_condition=n)
    engine = RolloutEngine(CoinPolicy(), env_name="coin", max_steps=2, history_len=0, batch_size=4096,
                           record_steps=False)
    (record,) = label_chunk([coin_snapshot()], CoinPolicy(), OracleTeacher(), engine, params, seed=0)
    p_student, p_patched = 1 - 0.7**2, 1 - 0.1 * 0.7  # two steps left
    lev, c = record["leverage"], record["cpt"]
    assert lev["p_student"] == pytest.approx(p_student, abs=0.04)
    assert lev["p_force"] == 1.0 and lev["p_expert"] == 1.0
    assert lev["L_local"] == pytest.approx(1 - p_student, abs=0.04)
    assert lev["ci"]["student"][0] < p_student < lev["ci"]["student"][1]
    assert c["p_demo"] == pytest.approx(p_patched, abs=0.04)
    assert c["p_contrast"] == pytest.approx(p_patched, abs=0.04)
    assert c["p_hint"] == pytest.approx(p_student, abs=0.04)
    assert c["p_placebo"] == pytest.approx(p_student, abs=0.04)
    assert c["ELP_net"] == pytest.approx(p_patched - p_student, abs=0.06)
    assert c["route_net"] in ("demo", "contrast")
    assert record["U"] == pytest.approx(-(0.3 * math.log(0.3) + 0.7 * math.log(0.7)), abs=1e-5)
    assert record["teacher"]["suggested_action"] == "good"


def test_labels_are_reproducible_and_skips_are_honoured():
    params = LabelParams(n_student_rollouts=5, n_force_rollouts=5, n_expert_rollouts=1, n_per_condition=3)
    engine = RolloutEngine(CoinPolicy(), env_name="coin", max_steps=2, history_len=0, record_steps=False)
    run = lambda p: label_chunk([coin_snapshot()], CoinPolicy(), OracleTeacher(), engine, p, seed=3)[0]
    assert run(params) == run(params)
    skipped = run(params.model_copy(update={"skip_cpt": True}))
    assert "cpt" not in skipped and "leverage" in skipped


def test_uncertainty_on_hand_made_distributions():
    even = uncertainty([0.5, 0.5])
    assert even["entropy"] == pytest.approx(math.log(2), abs=1e-6)
    assert even["margin"] == 0 and even["top_prob"] == 0.5 and even["normalized_entropy"] == pytest.approx(1)
    sure = uncertainty([0.0, 1.0, 0.0])
    assert sure["entropy"] == 0 and sure["margin"] == 1 and sure["top_prob"] == 1
    skewed = uncertainty([0.6, 0.3, 0.1])
    assert skewed["margin"] == pytest.approx(0.3) and 0 < skewed["normalized_entropy"] < 1


def test_wilson_interval_and_leverage_arithmetic():
    r = rate(7, 10)
    assert r["p"] == 0.7 and r["ci"][0] == pytest.approx(0.3968, abs=1e-3) and r["ci"][1] == pytest.approx(0.8922,
                                                                                                              abs=1e-3)
    lev = leverage({"student": [True, False, False, False], "force": [True, True, True, False],
                    "expert": [True, True]})
    assert lev["L_local"] == 0.5 and lev["L_upper"] == 0.75
    c = cpt({"base": [False], "placebo": [True, False], "demo": [True, True], "contrast": [False, False],
             "hint": [True, True]})
    assert c["ELP_net"] == 0.5 and c["route_net"] == "demo"  # ties go to the first patch


def test_quadrant_boundaries():
    cut = {"U": 1.0, "L": 0.2}
    assert quadrant(1.5, 0.5, cut) == "Q1_highU_highL"
    assert quadrant(1.5, 0.1, cut) == "Q2_highU_lowL"
    assert quadrant(0.5, 0.1, cut) == "Q3_lowU_lowL"
    assert quadrant(0.5, 0.5, cut) == "Q4_lowU_highL"
    assert quadrant(1.0, 0.2, cut) == "Q3_lowU_lowL"  # on the line is low


def test_thresholds_auto_and_manual():
    records = [{"U": u, "leverage": {"L_local": l, "L_upper": 0.0}, "cpt": {"ELP_net": 0.1}}
               for u, l in [(0.1, 0.0), (0.2, 0.5), (0.9, 0.1), (1.0, 0.9)]]
    cut = thresholds(records, QuadrantParams())
    assert cut["U"] == pytest.approx(0.55) and cut["L"] == pytest.approx(0.3)
    for r in records:
        r["quadrant"] = quadrant(r["U"], r["leverage"]["L_local"], cut)
    counts = {q: s["count"] for q, s in summary(records).items()}
    assert counts == {"Q1_highU_highL": 1, "Q2_highU_lowL": 1, "Q3_lowU_lowL": 1, "Q4_lowU_highL": 1}
    manual = thresholds(records, QuadrantParams(mode="manual", U_threshold=0.05, L_threshold=0.95))
    assert (manual["U"], manual["L"]) == (0.05, 0.95)
    with pytest.raises(ValueError, match="manual needs"):
        QuadrantParams(mode="manual")


@pytest.mark.parametrize("action", ["go forward", "turn left", "pick up"])
def test_placebo_is_about_as_long_as_the_demo(action):
    demo = demo_patch(action, "The yellow key you need is 3 forward 2 left from you.")
    for seed in range(5):
        placebo = placebo_patch(len(demo), random.Random(seed))
        assert abs(len(placebo) - len(demo)) <= 40 and action not in placebo
