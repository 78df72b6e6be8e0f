"""Phase 1B: does the CPT predict what training would do? For a sample of snapshots per quadrant, a LoRA
micro-run on the snapshot's own supervision record, then rollouts from the snapshot with and without the adapter
on the same seeds: the difference is the real gain, to be correlated with ELP_net.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from peft import PeftModel
from scipy.stats import spearmanr

from teachable.config import EnvParams, MicroTrainParams, TrainParams
from teachable.labeling.estimates import sample_seed
from teachable.labeling.quadrants import QUADRANTS
from teachable.policy.hf import HFPolicy
from teachable.rollout import RolloutEngine, RolloutSpec
from teachable.supervision import supervision_record
from teachable.training import train_lora


def micro_train_params(train: TrainParams, micro: MicroTrainParams) -> TrainParams:
    """The `train` recipe (LoRA shape) with the micro-run's steps and learning rate, one record per batch."""
    return train.model_copy(update={"max_steps": micro.n_steps, "learning_rate": micro.learning_rate,
                                    "batch_size": 1, "method": "sft"})


def micro_engine_kwargs(env: EnvParams, temperature: float) -> dict:
    """Validation rollouts run like the labeling ones (same temperature), without step records."""
    return dict(env_name=env.name, max_steps=env.max_steps, history_len=env.history_len, temperature=temperature,
                record_steps=False)


def sample_per_quadrant(records: list[dict], n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    chosen = []
    for q in QUADRANTS:
        rows = [r for r in records if r["quadrant"] == q]
        chosen += rng.sample(rows, min(n, len(rows)))
    return chosen


def validation_specs(record: dict, n: int, seed: int) -> list[RolloutSpec]:
    """The same n rollouts (same sample seeds) for the base and the trained model."""
    state = record["state"]
    return [RolloutSpec(f"{record['snapshot_id']}|{i}", state["level"], record["seed"],
                        sample_seed=sample_seed(seed, record["snapshot_id"], i),
                        start_actions=tuple(state["actions"]), start_hash=record["state_hash"]) for i in range(n)]


def success_rate(engine: RolloutEngine, specs: list[RolloutSpec]) -> float:
    return float(np.mean([ep.success for ep in engine.run(specs)]))


def micro_run(policy: HFPolicy, record: dict, train: TrainParams, n_validation: int, engine_kwargs: dict,
              out_dir: Path, seed: int) -> dict:
    """Train a fresh adapter on one snapshot's record (in its CPT route format), measure the gain, drop it."""
    fmt = record["cpt"]["route_net"]
    specs = validation_specs(record, n_validation, seed)
    p_base = success_rate(RolloutEngine(policy, **engine_kwargs), specs)
    metrics = train_lora(policy.name, [supervision_record(record, fmt)], train, out_dir, seed=seed, report=False,
                         model=policy.model, tokenizer=policy.tokenizer, checkpoint_dir=out_dir / "checkpoints")
    trained = PeftModel.from_pretrained(policy.model, str(out_dir)).eval()
    try:
        p_trained = success_rate(RolloutEngine(HFPolicy(trained, policy.tokenizer, policy.name), **engine_kwargs),
                                 specs)
    finally:
        trained.unload()  # the shared base model is left as it was
    return {"snapshot_id": record["snapshot_id"], "quadrant": record["quadrant"], "format": fmt,
            "ELP_net": record["cpt"]["ELP_net"], "p_base": p_base, "p_trained": p_trained,
            "gain": round(p_trained - p_base, 6), "n_validation": n_validation, "train_loss": metrics["train_loss"]}


def correlation(elp: list[float], gain: list[float], seed: int, n_resamples: int = 1000) -> dict:
    """Spearman rho with its p-value (scipy) and a 95% percentile bootstrap interval (paired resampling)."""
    if len(elp) < 3 or np.ptp(elp) == 0 or np.ptp(gain) == 0:
        return {"n": len(elp), "rho": None, "p_value": None, "ci": [None, None]}
    result = spearmanr(elp, gain)
    x, y = np.asarray(elp, dtype=float), np.asarray(gain, dtype=float)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_resamples):  # paired resampling; resamples with a constant side have no rank correlation
        idx = rng.integers(0, len(x), len(x))
        if np.ptp(x[idx]) > 0 and np.ptp(y[idx]) > 0:
            draws.append(spearmanr(x[idx], y[idx]).statistic)
    ci = np.percentile(draws, [2.5, 97.5]) if draws else [np.nan, np.nan]
    return {"n": len(elp), "rho": round(float(result.statistic), 6), "p_value": round(float(result.pvalue), 6),
            "ci": [round(float(ci[0]), 6), round(float(ci[1]), 6)]}


def summarise(results: list[dict], seed: int, target: float = 0.3, stretch: float = 0.5) -> dict:
    overall = correlation([r["ELP_net"] for r in results], [r["gain"] for r in results], seed)
    per_quadrant, utility = {}, {}
    for q in QUADRANTS:
        rows = [r for r in results if r["quadrant"] == q]
        per_quadrant[q] = correlation([r["ELP_net"] for r in rows], [r["gain"] for r in rows], seed)
        utility[q] = round(float(np.mean([r["gain"] for r in rows])), 6) if rows else None
    rho = overall["rho"]
    q1, q2 = utility["Q1_highU_highL"], utility["Q2_highU_lowL"]
    gates = {
        "cpt_validity": {"value": rho, "threshold": target, "stretch": stretch,
                         "passed": rho is not None and rho >= target,
                         "stretch_passed": rho is not None and rho >= stretch},
        "q1_beats_q2": {"value": [q1, q2], "passed": q1 is not None and q2 is not None and q1 > q2},
    }
    return {"overall": overall, "per_quadrant": per_quadrant, "mean_gain_per_quadrant": utility, "gates": gates,
            "all_passed": all(g["passed"] for g in gates.values())}
