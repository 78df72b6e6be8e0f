import numpy as np
import pytest
from transformers import AutoModelForCausalLM

from teachable import gates
from teachable.core.params import LabelParams, MicroTrainParams, TrainParams
from teachable.labeling.quadrants import QUADRANTS
from teachable.rollout.engine import RolloutEngine
from teachable.training.microtrain import (
    cpt_specs,
    loss_curves_csv,
    measure_untrained,
    micro_run,
    sample_per_quadrant,
    summarise,
    validation_specs,
)
from teachable.policy.hf import HFPolicy
from teachable.core.records import Snapshot
from tests.test_training import LABELED


def _results(n, rng, rho=0.0):
    """n micro-run results whose ELP_net and gain correlate at about rho, split evenly over Q1..Q4,
    in one p_base stratum; L_local is noise."""
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    return [
        {
            "quadrant": QUADRANTS[i % 4],
            "ELP_net": float(a),
            "gain": float(b),
            "p_base_pooled": 0.5,
            "p_base": 0.5,
            "L_local": float(rng.normal()),
            "ELP_net_halves": [float(a + rng.normal(0, 0.3)), float(a + rng.normal(0, 0.3))],
            "gain_halves": [float(b + rng.normal(0, 0.3)), float(b + rng.normal(0, 0.3))],
        }
        for i, (a, b) in enumerate(z)
    ]


def test_summary_reports_both_gates_with_reliabilities_and_power():
    summary = summarise(
        _results(80, np.random.default_rng(0), rho=0.6),
        MicroTrainParams.defaults(),
        seed=0,
        min_effect=0.05,
    )
    validity = summary["gates"]["cpt_validity"]
    assert (
        validity["status"] == "pass"
        and validity["p_value"] < 0.05
        and validity["ci"][0] < validity["value"]
    )
    assert 0.7 < summary["reliability"]["ELP_net"] < 1 and 0.7 < summary["reliability"]["gain"] < 1
    assert validity["disattenuated_rho"] > validity["value"]
    # the smallest n with power 0.8 at the target
    n, target = validity["n_needed"], validity["visible_target"]
    assert (
        gates.correlation_power(target, n, 0.05)
        >= 0.8
        > gates.correlation_power(target, n - 1, 0.05)
    )
    assert summary["gates"]["q1_beats_q2"]["status"] in ("pass", "fail", "inconclusive")
    assert summary["gates"]["q1_beats_q2"]["threshold"] == 0.05  # gates.min_effect, passed in
    versus = summary["cpt_vs_leverage"]  # L_local is noise here: ELP_net predicts the gain better
    assert versus["rho_elp"] > 0.4 and abs(versus["rho_l_local"]) < 0.25 and versus["ci"][0] > 0
    assert summary["format"] == "demo"
    assert summary["per_quadrant"]["Q1_highU_highL"]["n"] == 20


def test_validation_seeds_are_disjoint_from_every_labeling_seed():
    """The labeling's rollouts of 40 snapshots (every arm, up to the cap), the micro-runs'
    validation rollouts and the re-measured CPT arm of the same snapshots share no sample seed: no
    measure's noise is in another's. The re-measured patch and placebo share theirs (paired)."""
    from teachable.labeling.label import _specs
    from teachable.teacher.base import Advice

    advice = Advice(
        suggested_action="go forward", diagnosis="", hint="", contrast="", source="oracle"
    )
    patches = {c: f"Teacher: {c}." for c in ("placebo", "demo", "contrast", "hint")}
    labeling, validation, remeasured = set(), set(), set()
    for i in range(40):
        record = {
            **LABELED,
            "snapshot_id": f"snap{i}",
            "seed": i,
            "env": "babyai",
            "task_id": f"GoToLocal-{i}",
            "step_idx": 1,
            "source": "student_failure",
            "state": {"level": "GoToLocal", "seed": i, "actions": []},
            "state_hash": "",
        }
        snap = Snapshot.model_validate(record)
        labeling |= {
            s.sample_seed for s in _specs(snap, advice, patches, LabelParams.defaults(), 0, 0, 64)
        }
        validation |= {s.sample_seed for s in validation_specs(record, 64, seed=0, horizon=16)}
        remeasured |= {
            s.sample_seed for s in cpt_specs({**record, "patches": patches}, "demo", 64, 0, 16)
        }
    assert len(validation) == 40 * 64 and not labeling & validation
    assert len(remeasured) == 40 * 64 and not remeasured & (labeling | validation)


def test_sampling_per_quadrant_is_capped_and_deterministic():
    records = [
        {"snapshot_id": str(i), "quadrant": "Q1_highU_highL" if i < 7 else "Q3_lowU_lowL"}
        for i in range(9)
    ]
    chosen = sample_per_quadrant(records, 3, seed=1)
    assert [r["quadrant"] for r in chosen].count("Q1_highU_highL") == 3
    assert [r["quadrant"] for r in chosen].count("Q3_lowU_lowL") == 2
    assert chosen == sample_per_quadrant(records, 3, seed=1)


@pytest.mark.heavy
def test_a_micro_run_uses_the_same_seeds_and_leaves_the_base_intact(tiny_student_dir, tmp_path):
    """The pre-registered format is trained and re-measured whatever route the labeling picked; the
    trained student runs on the base arm's seeds; the base weights are untouched."""
    from teachable.envs import make_env

    env = make_env("babyai", "GoToLocal", 8)
    env.reset(3)
    env.step("turn left")
    patches = {c: f"Teacher: {c} patch." for c in ("placebo", "demo", "contrast", "hint")}
    record = {
        **LABELED,
        "quadrant": "Q1_highU_highL",
        "seed": 3,
        "state": env.state(),
        "state_hash": env.state_hash(),
        "patches": patches,
        "leverage": {"L_local": 0.25, "p_student": 0.5, "n_student": 8},
        "cpt": {"route_net": "hint", "ELP_net": 0.5, "ELP_net_halves": [0.5, 0.5]},
    }
    specs = validation_specs(record, 4, seed=0, horizon=6, tag="base")
    assert [s.sample_seed for s in specs] == [
        s.sample_seed for s in validation_specs(record, 4, seed=0, horizon=6)
    ]
    paired = cpt_specs(record, "demo", 4, 0, 6)
    assert [s.patch for s in paired] == [patches["demo"]] * 4 + [patches["placebo"]] * 4
    assert [s.sample_seed for s in paired[:4]] == [s.sample_seed for s in paired[4:]]
    model = AutoModelForCausalLM.from_pretrained(tiny_student_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    policy = HFPolicy(
        model.eval(), __import__("transformers").AutoTokenizer.from_pretrained(tiny_student_dir)
    )
    p = MicroTrainParams.defaults(n_cpt_rollouts=4, n_validation_rollouts=4)
    kwargs = dict(env_name="babyai", max_steps=8, history_len=2, batch_size=16, record_steps=False)
    untrained = measure_untrained(RolloutEngine(policy, **kwargs), [record], p, 0, 6)["s1"]
    assert {k: len(v) for k, v in untrained.items()} == {"demo": 4, "placebo": 4, "base": 4}
    result = micro_run(
        policy,
        record,
        untrained,
        TrainParams.defaults(max_steps=2, batch_size=1),
        p,
        6,
        kwargs,
        tmp_path / "a",
        0,
    )
    assert result["format"] == "demo" and result["gain"] == pytest.approx(
        result["p_trained"] - result["p_base"]
    )
    assert result["ELP_net"] == pytest.approx(result["p_patch"] - result["p_placebo"])
    assert result["ELP_net_labeling"] == 0.5 and result["L_local"] == 0.25 and result["steps"] == 2
    assert result["p_base_pooled"] == pytest.approx((4 + 4 * result["p_base"]) / 12)
    assert (
        result["gain_ci"][0] <= result["gain"] <= result["gain_ci"][1]
        and len(result["gain_halves"]) == 2
    )
    # the micro-run's per-step loss, for its artifact
    assert [p["step"] for p in result["loss_curve"]] == [1, 2]
    csv_lines = loss_curves_csv([result]).splitlines()
    assert csv_lines[0] == "snapshot_id,quadrant,format,step,loss" and csv_lines[1].startswith(
        "s1,Q1_highU_highL,demo,1,"
    )
    after = policy.model.state_dict()
    assert set(after) == set(before) and all(np.array_equal(before[k], after[k]) for k in before)
