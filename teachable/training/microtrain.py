"""Phase 1B: does the CPT predict what training would do? For a sample of snapshots per quadrant, a LoRA
micro-run on the snapshot's own supervision record, then rollouts from the snapshot with and without the adapter on
the same seeds (a stream of their own, disjoint from the labeling's, so label noise and outcome noise are
independent): the paired difference is the real gain, to be correlated with ELP_net.
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import numpy as np
from peft import PeftModel
from scipy.stats import spearmanr

from teachable import gates
from teachable.core.params import EnvParams, MicroTrainParams, TrainParams
from teachable.labeling.estimates import paired_difference, sample_seed
from teachable.labeling.quadrants import QUADRANTS
from teachable.policy.hf import HFPolicy
from teachable.rollout.engine import RolloutEngine, RolloutSpec
from teachable.training.supervision import supervision_record
from teachable.training.lora import train_lora


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


def validation_seed(seed: int, snapshot_id: str, i: int) -> int:
    """Validation rollout i's sample seed: the labeling's formula in a namespace of its own."""
    return sample_seed(f"validate|{seed}", snapshot_id, i)


def validation_specs(record: dict, n: int, seed: int, horizon: int | None) -> list[RolloutSpec]:
    """The same n rollouts (same sample seeds, the labeling's horizon) for the base and the trained model."""
    state = record["state"]
    return [RolloutSpec(f"{record['snapshot_id']}|{i}", state["level"], record["seed"],
                        sample_seed=validation_seed(seed, record["snapshot_id"], i),
                        start_actions=tuple(state["actions"]), start_hash=record["state_hash"], horizon=horizon)
            for i in range(n)]


def outcomes(engine: RolloutEngine, specs: list[RolloutSpec]) -> list[bool]:
    return [ep.success for ep in engine.run(specs)]


def gain_estimates(base: list[bool], trained: list[bool]) -> dict:
    """The gain (trained - base, paired by seed) with its interval, and on the even and odd rollouts apart (for
    the gain's split-half reliability)."""
    gain = paired_difference(trained, base)
    halves = [round(float(np.mean(trained[h::2]) - np.mean(base[h::2])), 6) for h in (0, 1)]
    return {"p_base": round(float(np.mean(base)), 6), "p_trained": round(float(np.mean(trained)), 6),
            "gain": gain["diff"], "gain_ci": gain["ci"], "gain_halves": halves}


def micro_run(policy: HFPolicy, record: dict, train: TrainParams, n_validation: int, horizon: int | None,
              engine_kwargs: dict, out_dir: Path, seed: int) -> dict:
    """Train a fresh adapter on one snapshot's record (in its CPT route format), measure the gain, drop it."""
    fmt = record["cpt"]["route_net"]
    specs = validation_specs(record, n_validation, seed, horizon)
    base = outcomes(RolloutEngine(policy, **engine_kwargs), specs)
    metrics = train_lora(policy.name, [supervision_record(record, fmt)], train, out_dir, seed=seed, report=False,
                         model=policy.model, tokenizer=policy.tokenizer, checkpoint_dir=out_dir / "checkpoints")
    trained_model = PeftModel.from_pretrained(policy.model, str(out_dir)).eval()
    try:
        trained = outcomes(RolloutEngine(HFPolicy(trained_model, policy.tokenizer, policy.name), **engine_kwargs),
                           specs)
    finally:
        trained_model.unload()  # the shared base model is left as it was
    return {"snapshot_id": record["snapshot_id"], "quadrant": record["quadrant"], "format": fmt,
            "ELP_net": record["cpt"]["ELP_net"], "ELP_net_halves": record["cpt"]["ELP_net_halves"],
            **gain_estimates(base, trained), "n_validation": n_validation, "train_loss": metrics["train_loss"],
            "loss_curve": metrics["loss_curve"]}


CURVE_COLUMNS = ["snapshot_id", "quadrant", "format", "step", "loss"]


def loss_curves_csv(results: list[dict]) -> str:
    """Every micro-run's per-step training loss, one row per (snapshot, step): one small CSV for the stage's MLflow
    run instead of a metric series per micro-run."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CURVE_COLUMNS)
    writer.writerows([r["snapshot_id"], r["quadrant"], r["format"], point["step"], point["loss"]]
                     for r in results for point in r.get("loss_curve", []))
    return out.getvalue()


def quadrant_correlation(elp: list[float], gain: list[float]) -> dict:
    """Spearman rho within one quadrant, descriptive (the gate is on all micro-runs together)."""
    if len(elp) < 3 or np.ptp(elp) == 0 or np.ptp(gain) == 0:
        return {"n": len(elp), "rho": None}
    return {"n": len(elp), "rho": round(float(spearmanr(elp, gain).statistic), 6)}


def summarise(results: list[dict], params: MicroTrainParams, seed: int, min_effect: float = 0.05) -> dict:
    """The two phase 1B gates (`teachable.gates`), the reliabilities they use, and per-quadrant descriptives.
    `min_effect`: the smallest useful Q1 - Q2 gain difference (`gates.min_effect`). CPT validity is tested given
    each micro-run's base success `p_base` (one stratum for results that lack it)."""
    elp = [r["ELP_net"] for r in results]
    gain = [r["gain"] for r in results]
    reliability = {
        "ELP_net": gates.split_half_reliability(*zip(*[r["ELP_net_halves"] for r in results]), step_up=False)
        if len(results) >= 3 else None,
        "gain": gates.split_half_reliability(*zip(*[r["gain_halves"] for r in results]), step_up=True)
        if len(results) >= 3 else None,
    }
    by_quadrant = {q: [r for r in results if r["quadrant"] == q] for q in QUADRANTS}
    verdicts = {
        "cpt_validity": gates.cpt_validity(elp, gain, [r["p_base"] for r in results]
                                           if all("p_base" in r for r in results) else None,
                                           reliability["ELP_net"], reliability["gain"], params.alpha,
                                           params.target_rho, seed),
        "q1_beats_q2": gates.q1_beats_q2([r["gain"] for r in by_quadrant[QUADRANTS[0]]],
                                         [r["gain"] for r in by_quadrant[QUADRANTS[1]]], params.alpha, seed,
                                         min_effect=min_effect),
    }
    return {
        "n": len(results),
        "reliability": {k: None if v is None else round(v, 6) for k, v in reliability.items()},
        "per_quadrant": {q: {**quadrant_correlation([r["ELP_net"] for r in rows], [r["gain"] for r in rows]),
                             "mean_gain": round(float(np.mean([r["gain"] for r in rows])), 6) if rows else None,
                             "mean_ELP_net": round(float(np.mean([r["ELP_net"] for r in rows])), 6) if rows else None}
                         for q, rows in by_quadrant.items()},
        "gates": verdicts,
        "any_failed": any(v["status"] == gates.FAIL for v in verdicts.values()),
    }
