import numpy as np
import pytest
from transformers import AutoModelForCausalLM

from teachable.config import TrainParams
from teachable.microtrain import correlation, micro_run, sample_per_quadrant, summarise, validation_specs
from teachable.policy.hf import HFPolicy
from tests.test_training import LABELED


def test_spearman_and_bootstrap_on_known_data():
    elp = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert correlation(elp, [1, 2, 3, 4, 5, 6], seed=0)["rho"] == 1.0
    assert correlation(elp, [6, 5, 4, 3, 2, 1], seed=0)["rho"] == -1.0
    noisy = correlation(elp, [1, 3, 2, 4, 6, 5], seed=0)
    assert noisy["rho"] == pytest.approx(1 - 6 * 4 / (6 * 35), abs=1e-6)  # sum of squared rank gaps = 4
    assert noisy["ci"][0] <= noisy["rho"] <= noisy["ci"][1] and 0 < noisy["p_value"] < 0.1
    assert correlation([0.1, 0.2], [1, 2], seed=0)["rho"] is None  # too few to say


def test_gates_and_per_quadrant_utility():
    rows = [{"quadrant": q, "ELP_net": e, "gain": g} for q, e, g in [
        ("Q1_highU_highL", 0.5, 0.5), ("Q1_highU_highL", 0.4, 0.3), ("Q2_highU_lowL", 0.0, 0.0),
        ("Q2_highU_lowL", 0.1, 0.1), ("Q3_lowU_lowL", 0.0, -0.1), ("Q4_lowU_highL", 0.3, 0.2)]]
    summary = summarise(rows, seed=0)
    assert summary["gates"]["cpt_validity"]["passed"] and summary["gates"]["q1_beats_q2"]["passed"]
    assert summary["mean_gain_per_quadrant"]["Q1_highU_highL"] == pytest.approx(0.4)
    flipped = summarise([{**r, "gain": -r["gain"]} for r in rows], seed=0)
    assert not flipped["all_passed"]


def test_sampling_per_quadrant_is_capped_and_deterministic():
    records = [{"snapshot_id": str(i), "quadrant": "Q1_highU_highL" if i < 7 else "Q3_lowU_lowL"} for i in range(9)]
    chosen = sample_per_quadrant(records, 3, seed=1)
    assert [r["quadrant"] for r in chosen].count("Q1_highU_highL") == 3
    assert [r["quadrant"] for r in chosen].count("Q3_lowU_lowL") == 2
    assert chosen == sample_per_quadrant(records, 3, seed=1)


def test_a_micro_run_uses_the_same_seeds_and_leaves_the_base_intact(tiny_student_dir, tmp_path):
    from teachable.envs import make_env

    env = make_env("babyai", "GoToLocal", 8)
    env.reset(3)
    env.step("turn left")
    record = {**LABELED, "quadrant": "Q1_highU_highL", "seed": 3, "state": env.state(),
              "state_hash": env.state_hash(), "cpt": {"route_net": "hint", "ELP_net": 0.5}}
    specs = validation_specs(record, 4, seed=0)
    assert [s.sample_seed for s in specs] == [s.sample_seed for s in validation_specs(record, 4, seed=0)]
    model = AutoModelForCausalLM.from_pretrained(tiny_student_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    policy = HFPolicy(model.eval(), __import__("transformers").AutoTokenizer.from_pretrained(tiny_student_dir))
    result = micro_run(policy, record, TrainParams(max_steps=2, batch_size=1), 4,
                       dict(env_name="babyai", max_steps=8, history_len=2, record_steps=False), tmp_path / "a", 0)
    assert result["format"] == "hint" and result["gain"] == pytest.approx(result["p_trained"] - result["p_base"])
    after = policy.model.state_dict()
    assert set(after) == set(before) and all(np.array_equal(before[k], after[k]) for k in before)
