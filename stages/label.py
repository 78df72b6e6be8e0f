"""Stage `label` (phase 1): U, teacher advice, leverage (p_student, L_local, L_upper) and the Contextual Patch
Test for every snapshot; all rollouts of a chunk of snapshots run batched through the rollout engine.

Output `data/labeled_snapshots.jsonl` and `reports/phase1/label_metrics.json`. Resumable: finished snapshots are
appended to a scratch log keyed by the params; a killed run restarted labels only the rest. A teacher that cannot go
on (budget spent, too many unusable answers, no answers, a key revoked mid-run) stops the stage with one line and
exit code 2; the finished snapshots are kept for the rerun.
"""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from teachable import stage
from teachable.core import resume
from teachable.core.params import Params
from teachable.labeling.label import label_chunk
from teachable.core.records import Snapshot, read_jsonl, require_unique, write_json, write_jsonl
from teachable.rollout.engine import RolloutEngine
from teachable.training.student import load_student
from teachable.teacher import make_teacher
from teachable.teacher.base import TeacherStopped
from teachable.core.tracking import stage_run

SNAPSHOTS, OUT, METRICS = "data/snapshots.jsonl", "data/labeled_snapshots.jsonl", "reports/phase1/label_metrics.json"


# Teacher keys that bound a run (budget, timeouts, prices, when to give up) but never change a label: a call that got
# no answer is asked again or stops the stage, never a fallback, so none of them can turn an answer into another.
# Left out of what decides reuse. (`retries`, re-asks after an unusable answer, can change a label: it stays in.)
BUDGET_KEYS = {"max_calls", "max_usd", "timeout_s", "client_retries", "usd_per_mtok_in", "usd_per_mtok_out",
               "max_fallback_fraction", "max_consecutive_failures"}


def resume_key(params: Params) -> dict:
    """Every param the stage's results depend on: a resume log is reused only under the same ones."""
    key = params.model_dump(mode="json", include={"seed", "env", "shop", "student", "teacher", "label"})
    key["teacher"] = {k: v for k, v in key["teacher"].items() if k not in BUDGET_KEYS}
    key["L_threshold"] = params.quadrants.L_threshold
    return key


def main(params: Params) -> None:
    p, env = params.label, params.env
    teacher = make_teacher(params.teacher)  # no key, a wrong key, no server, an unknown model: fails here, first
    snapshots = read_jsonl(SNAPSHOTS, Snapshot)
    require_unique([{"snapshot_id": s.snapshot_id} for s in snapshots], "snapshot_id", SNAPSHOTS)
    snapshots = snapshots[: p.max_snapshots]
    if not snapshots:
        raise stage.StageInputError(f"{SNAPSHOTS} holds no snapshots: nothing to label")
    key = resume_key(params)
    key["snapshots_file"] = [s.snapshot_id for s in snapshots]
    scratch = resume.ScratchLog("label", key)
    done = {r["snapshot_id"]: r for r in scratch.load()}
    todo = [s for s in snapshots if s.snapshot_id not in done]
    with stage_run("label", {k: v for k, v in key.items() if k != "snapshots_file"}) as mlflow:
        policy = load_student(params.student)
        engine = RolloutEngine(policy, env.name, env.max_steps, env.history_len, p.temperature, p.batch_size,
                               record_steps=False)
        started = time.time()
        with tqdm(total=len(snapshots), initial=len(done), desc="labeling", unit="snapshot") as bar:
            for i in range(0, len(todo), p.chunk_size):
                chunk = todo[i : i + p.chunk_size]
                try:
                    labeled = label_chunk(chunk, policy, teacher, engine, p, params.seed,
                                          params.quadrants.L_threshold)
                except TeacherStopped as err:  # budget, unusable answers, no answers, a revoked key: exit code 2
                    # finished snapshots stay in the scratch log (and answers in the cache) for the next run
                    raise TeacherStopped(f"{err}; {len(done)} snapshots labeled so far are kept, "
                                         "rerun to go on") from None
                for record in labeled:
                    scratch.append(record)
                    done[record["snapshot_id"]] = record
                for snap in chunk:  # dropped by the teacher: remembered so a rerun does not ask again
                    if snap.snapshot_id not in done:
                        scratch.append({"snapshot_id": snap.snapshot_id, "dropped": True})
                        done[snap.snapshot_id] = {"dropped": True}
                bar.update(len(chunk))
        records = [done[s.snapshot_id] for s in snapshots if not done[s.snapshot_id].get("dropped")]
        write_jsonl(OUT, records)
        minutes = (time.time() - started) / 60
        metrics = {"n_labeled": len(records), "n_labeled_this_run": len(todo),
                   "rollouts": sum(r["rollouts"]["total"] for r in records),
                   "mean_rollouts_per_arm": round(sum(r["rollouts"]["n_per_arm"] for r in records) / len(records), 3)
                   if records else None,
                   "snapshots_per_minute": round(len(todo) / minutes, 2) if todo and minutes else None,
                   **{f"L_side_{side}": sum(r.get("leverage", {}).get("side") == side for r in records)
                      for side in ("high", "low", "undetermined")},
                   "teacher_invalid": sum(not r["teacher"]["valid"] for r in records),
                   "teacher_dropped": len(snapshots) - len(records),
                   **{f"teacher_{k}": v for k, v in getattr(teacher, "ledger", {}).items()}}
        write_json(METRICS, metrics)
        mlflow.log_metrics({k: v for k, v in metrics.items() if v is not None})
    scratch.remove()


if __name__ == "__main__":
    stage.run(main)
