"""Stage `micro_train` (phase 1B): CPT validation by micro-training.

For `n_per_quadrant` snapshots per quadrant, on three seed streams of their own
(`teachable.training.microtrain`): the pre-registered CPT arm re-measured (`format` patch minus
placebo, `n_cpt_rollouts` each) and the base student's `n_validation_rollouts`, all snapshots
batched in one shared run; then per snapshot a fresh LoRA adapter trained for `n_steps` on its own
record in `format` (the base model is loaded once) and the trained student on the base's seeds.
Outputs `reports/phase1b/micro_training_results.json` and `cpt_correlation.json`: the CPT validity
gate (Spearman rho of ELP_net vs gain within p_base strata, one-sided permutation p within strata,
Fisher interval, the split-half reliabilities of both measures, the disattenuated rho, power and the
n it needs), rho(ELP_net, gain) - rho(L_local, gain) with its paired bootstrap interval, and the Q1
> Q2 gate (teachable.gates). With `strict_gates: true` a failed gate exits 1 (inconclusive does
not). Resumable per snapshot. Every micro-run's per-step training loss goes to the stage's MLflow
run as one artifact, `micro_train/loss_curves.csv` (snapshot_id, quadrant, format, step, loss).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tqdm.auto import tqdm

from teachable import stage
from teachable.core import resume
from teachable.core.params import Params
from teachable.rollout.engine import RolloutEngine
from teachable.training.microtrain import (
    loss_curves_csv,
    measure_untrained,
    micro_engine_kwargs,
    micro_run,
    micro_train_params,
    sample_per_quadrant,
    summarise,
)
from teachable.core.records import read_jsonl, write_json
from teachable.policy.student import load_student
from teachable.core.tracking import stage_run

LABELED, REPORTS = "data/quadrant_snapshots.jsonl", Path("reports/phase1b")


def main(params: Params) -> None:
    p, env = params.micro_train, params.env
    records = sample_per_quadrant(read_jsonl(LABELED), p.n_per_quadrant, params.seed)
    train = micro_train_params(params.train, p)
    key = params.model_dump(
        mode="json", include={"seed", "env", "shop", "student", "train", "micro_train"}
    )
    key["label_horizon"] = params.label.horizon
    scratch = resume.ScratchLog("micro_train", key)
    done = {r["snapshot_id"]: r for r in scratch.load()}
    todo = [r for r in records if r["snapshot_id"] not in done]
    with stage_run("micro_train", key) as mlflow:
        policy = load_student(params.student, in_process=True)  # micro-runs train its weights
        engine_kwargs = micro_engine_kwargs(env, params.label.temperature, p.batch_size)
        horizon = params.label.horizon
        untrained = measure_untrained(
            RolloutEngine(policy, **engine_kwargs), todo, p, params.seed, horizon
        )
        with tempfile.TemporaryDirectory() as scratch_dir:
            for record in tqdm(todo, desc="micro-runs"):
                result = micro_run(
                    policy,
                    record,
                    untrained[record["snapshot_id"]],
                    train,
                    p,
                    horizon,
                    engine_kwargs,
                    Path(scratch_dir) / record["snapshot_id"],
                    params.seed,
                )
                scratch.append(result)
                done[result["snapshot_id"]] = result
        results = [done[r["snapshot_id"]] for r in records]
        summary = summarise(results, p, params.seed, params.gates.min_effect)
        write_json(
            REPORTS / "micro_training_results.json",
            {"results": [{k: v for k, v in r.items() if k != "loss_curve"} for r in results]},
        )
        mlflow.log_text(loss_curves_csv(results), "micro_train/loss_curves.csv")
        write_json(REPORTS / "cpt_correlation.json", summary)
        validity = summary["gates"]["cpt_validity"]
        mlflow.log_metrics(
            {
                k: v
                for k, v in {
                    "rho": validity["value"],
                    "rho_p_value": validity["p_value"],
                    "rho_power": validity["power"],
                    "n_micro_runs": len(results),
                }.items()
                if v is not None
            }
        )
        mlflow.set_tags({f"gate.{name}": g["status"] for name, g in summary["gates"].items()})
    scratch.remove()
    if p.strict_gates and summary["any_failed"]:
        print(f"error: CPT validation gates failed: {summary['gates']}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    stage.run(main)
