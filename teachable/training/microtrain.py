"""Phase 1B: does the CPT predict what training would do?

For a sample of snapshots per quadrant, three measurements on three seed streams of their own, none
shared with the labeling's or with each other, so no measure's noise is in another's:

- the CPT re-measured on a pre-registered arm (`micro_train.format` minus placebo, `n_cpt_rollouts`
  each, paired by seed), the predictor called `ELP_net` here: no route is chosen, so every rollout
  estimates it (no winner's curse, no split), and the labeling's ELP_net (route picked on half its 8
  rollouts, kept as `ELP_net_labeling`) is not the predictor;
- the base student from the snapshot (`n_validation_rollouts`);
- a LoRA micro-run on the snapshot's one record in the same format, then the trained student from
  the snapshot on the base's seeds: the paired difference is the real gain.

The gate correlates the two given p_base (`teachable.gates.cpt_validity`): states where nothing
helps (p_base 0, both measures 0) would otherwise make a correlation out of a shared floor. p_base
pools the labeling's student arm and the base arm here. Each measure's split-half reliability (even
vs odd rollouts) gives the power at the target.
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
from teachable.training.lora import train_lora
from teachable.training.supervision import supervision_record

PLACEBO = "placebo"


def micro_train_params(train: TrainParams, micro: MicroTrainParams) -> TrainParams:
    """The `train` recipe (LoRA shape) with the micro-run's steps and learning rate, one record per
    batch."""
    return train.model_copy(
        update={
            "max_steps": micro.n_steps,
            "learning_rate": micro.learning_rate,
            "batch_size": 1,
            "method": "sft",
        }
    )


def micro_engine_kwargs(env: EnvParams, temperature: float, batch_size: int) -> dict:
    """Rollouts run like the labeling ones (same temperature), without step records."""
    return dict(
        env_name=env.name,
        max_steps=env.max_steps,
        history_len=env.history_len,
        temperature=temperature,
        batch_size=batch_size,
        record_steps=False,
    )


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


def cpt_seed(seed: int, snapshot_id: str, i: int) -> int:
    """The re-measured CPT's rollout i: a third namespace, disjoint from the labeling's and the
    validation's."""
    return sample_seed(f"cpt-1b|{seed}", snapshot_id, i)


def _start(record: dict, horizon: int | None) -> dict:
    state = record["state"]
    return dict(
        level=state["level"],
        seed=record["seed"],
        start_actions=tuple(state["actions"]),
        start_hash=record["state_hash"],
        horizon=horizon,
    )


def validation_specs(
    record: dict, n: int, seed: int, horizon: int | None, tag: str = ""
) -> list[RolloutSpec]:
    """The same n rollouts (same sample seeds, the labeling's horizon) for the base and the trained
    model."""
    sid = record["snapshot_id"]
    return [
        RolloutSpec(
            f"{sid}|{tag or 'validate'}|{i}",
            sample_seed=validation_seed(seed, sid, i),
            **_start(record, horizon),
        )
        for i in range(n)
    ]


def cpt_specs(record: dict, fmt: str, n: int, seed: int, horizon: int | None) -> list[RolloutSpec]:
    """n rollouts with the pre-registered patch and n with the placebo, pairwise on the same
    seeds."""
    sid, patches = record["snapshot_id"], record["patches"]
    return [
        RolloutSpec(
            f"{sid}|{arm}|{i}",
            sample_seed=cpt_seed(seed, sid, i),
            patch=patches[arm],
            **_start(record, horizon),
        )
        for arm in (fmt, PLACEBO)
        for i in range(n)
    ]


def arm_outcomes(episodes) -> dict[str, dict[str, list[bool]]]:
    """Episodes with ids `snapshot|arm|i` (run in that order) as {snapshot: {arm:
    [success, ...]}}."""
    out: dict[str, dict[str, list[bool]]] = {}
    for ep in episodes:
        sid, arm, _ = ep.episode_id.split("|")
        out.setdefault(sid, {}).setdefault(arm, []).append(ep.success)
    return out


def measure_untrained(
    engine: RolloutEngine, records: list[dict], p: MicroTrainParams, seed: int, horizon: int | None
) -> dict[str, dict[str, list[bool]]]:
    """The CPT arms and the base arm of every record, all batched in one shared run (arms on the
    same seed and start that take the same first action are one episode,
    `RolloutEngine.run_shared`)."""
    specs = [
        s
        for r in records
        for s in (
            *cpt_specs(r, p.format, p.n_cpt_rollouts, seed, horizon),
            *validation_specs(r, p.n_validation_rollouts, seed, horizon, "base"),
        )
    ]
    return arm_outcomes(engine.run_shared(specs))


def difference_estimates(name: str, treated: list[bool], control: list[bool]) -> dict:
    """treated − control (paired by seed) with its interval, and on the even and odd rollouts apart
    (for the measure's split-half reliability)."""
    diff = paired_difference(treated, control)
    halves = [round(float(np.mean(treated[h::2]) - np.mean(control[h::2])), 6) for h in (0, 1)]
    return {name: diff["diff"], f"{name}_ci": diff["ci"], f"{name}_halves": halves}


def p_base_pooled(record: dict, base: list[bool]) -> float:
    """p_base for the gate's strata: the labeling's student arm and this stage's base arm together
    (two independent streams, so the estimate is as precise as both allow)."""
    lev = record.get("leverage") or {}
    k = round((lev.get("p_student") or 0.0) * (lev.get("n_student") or 0))
    return round((k + sum(base)) / ((lev.get("n_student") or 0) + len(base)), 6)


def micro_run(
    policy: HFPolicy,
    record: dict,
    untrained: dict[str, list[bool]],
    train: TrainParams,
    p: MicroTrainParams,
    horizon: int | None,
    engine_kwargs: dict,
    out_dir: Path,
    seed: int,
) -> dict:
    """Train a fresh adapter on the snapshot's record in the pre-registered format, roll the trained
    student out on the base arm's seeds, drop the adapter; the result holds every measure of the
    snapshot."""
    specs = validation_specs(record, p.n_validation_rollouts, seed, horizon, "base")
    metrics = train_lora(
        policy.name,
        [supervision_record(record, p.format)],
        train,
        out_dir,
        seed=seed,
        report=False,
        model=policy.model,
        tokenizer=policy.tokenizer,
        checkpoint_dir=out_dir / "checkpoints",
    )
    trained_model = PeftModel.from_pretrained(policy.model, str(out_dir)).eval()
    try:
        engine = RolloutEngine(
            HFPolicy(trained_model, policy.tokenizer, policy.name, policy.batch_size),
            **engine_kwargs,
        )
        trained = [ep.success for ep in engine.run(specs)]
    finally:
        trained_model.unload()  # the shared base model is left as it was
    base, treated, placebo = untrained["base"], untrained[p.format], untrained[PLACEBO]
    lev = record.get("leverage") or {}
    return {
        "snapshot_id": record["snapshot_id"],
        "quadrant": record["quadrant"],
        "format": p.format,
        **difference_estimates("ELP_net", treated, placebo),
        "p_patch": round(float(np.mean(treated)), 6),
        "p_placebo": round(float(np.mean(placebo)), 6),
        "n_cpt": len(treated),
        **difference_estimates("gain", trained, base),
        "p_base": round(float(np.mean(base)), 6),
        "p_trained": round(float(np.mean(trained)), 6),
        "n_validation": len(base),
        "p_base_pooled": p_base_pooled(record, base),
        "L_local": lev.get("L_local"),
        "ELP_net_labeling": (record.get("cpt") or {}).get("ELP_net"),
        "train_loss": metrics["train_loss"],
        "steps": metrics["steps"],
        "loss_curve": metrics["loss_curve"],
    }


CURVE_COLUMNS = ["snapshot_id", "quadrant", "format", "step", "loss"]


def loss_curves_csv(results: list[dict]) -> str:
    """Every micro-run's per-step training loss, one row per (snapshot, step): one small CSV for the
    stage's MLflow run instead of a metric series per micro-run."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CURVE_COLUMNS)
    writer.writerows(
        [r["snapshot_id"], r["quadrant"], r["format"], point["step"], point["loss"]]
        for r in results
        for point in r.get("loss_curve", [])
    )
    return out.getvalue()


def quadrant_correlation(elp: list[float], gain: list[float]) -> dict:
    """Spearman rho within one quadrant, descriptive (the gate is on all micro-runs together)."""
    if len(elp) < 3 or np.ptp(elp) == 0 or np.ptp(gain) == 0:
        return {"n": len(elp), "rho": None}
    return {"n": len(elp), "rho": round(float(spearmanr(elp, gain).statistic), 6)}


def reliability(results: list[dict], name: str) -> float | None:
    """A measure's split-half reliability over the micro-runs, stepped up to all its rollouts
    (Spearman-Brown)."""
    if len(results) < 3:
        return None
    value = gates.split_half_reliability(
        *zip(*[r[f"{name}_halves"] for r in results]), step_up=True
    )
    return None if value is None else round(value, 6)


def summarise(results: list[dict], params: MicroTrainParams, seed: int, min_effect: float) -> dict:
    """The phase 1B gates (`teachable.gates`): CPT validity given p_base, with L_local's correlation
    beside it, and Q1 > Q2; the reliabilities they use, and per-quadrant descriptives."""
    elp, gain = [r["ELP_net"] for r in results], [r["gain"] for r in results]
    p_base = [r["p_base_pooled"] for r in results]
    rel = {"ELP_net": reliability(results, "ELP_net"), "gain": reliability(results, "gain")}
    by_quadrant = {q: [r for r in results if r["quadrant"] == q] for q in QUADRANTS}
    verdicts = {
        "cpt_validity": gates.cpt_validity(
            elp, gain, p_base, rel["ELP_net"], rel["gain"], params.alpha, params.target_rho, seed
        ),
        "q1_beats_q2": gates.q1_beats_q2(
            [r["gain"] for r in by_quadrant[QUADRANTS[0]]],
            [r["gain"] for r in by_quadrant[QUADRANTS[1]]],
            params.alpha,
            seed,
            min_effect=min_effect,
        ),
    }
    with_leverage = [r for r in results if r.get("L_local") is not None]
    versus = (
        gates.cpt_vs_leverage(
            [r["ELP_net"] for r in with_leverage],
            [r["L_local"] for r in with_leverage],
            [r["gain"] for r in with_leverage],
            [r["p_base_pooled"] for r in with_leverage],
            params.alpha,
            seed,
        )
        if len(with_leverage) >= 4
        else None
    )
    mean = lambda rows, key: (  # noqa: E731
        round(float(np.mean([r[key] for r in rows])), 6) if rows else None
    )
    return {
        "n": len(results),
        "format": params.format,
        "reliability": rel,
        "per_quadrant": {
            q: {
                **quadrant_correlation([r["ELP_net"] for r in rows], [r["gain"] for r in rows]),
                "mean_gain": mean(rows, "gain"),
                "mean_ELP_net": mean(rows, "ELP_net"),
                "mean_p_base": mean(rows, "p_base"),
            }
            for q, rows in by_quadrant.items()
        },
        "gates": verdicts,
        "cpt_vs_leverage": versus,
        "any_failed": any(v["status"] == gates.FAIL for v in verdicts.values()),
    }
