"""Stage `label` (phase 1): U, teacher advice, leverage (p_student, L_local, L_upper) and the Contextual Patch
Test for every snapshot; each snapshot's rollouts of a round run batched through the rollout engine, in batches of
its own so that records are the same whatever the chunk and wherever a killed run resumed.

Output `data/labeled_snapshots.jsonl` and `reports/phase1/label_metrics.json`. Resumable: finished snapshots are
appended to a scratch log keyed by the params; a killed run restarted labels only the rest. A teacher that cannot go
on (budget spent, too many unusable answers, no answers, a key revoked mid-run) stops the stage with one line and
exit code 2; the finished snapshots are kept for the rerun.

Under `label.stopping: posterior` the stage labels in two passes so that no record depends on chunking: pass 1 runs
every snapshot's first round (teacher advice and U as always) and logs each state; the prior is fitted once on all
first rounds (its parameters go to the metrics); pass 2 gives the rounds after to the snapshots that need them.
Both passes resume from the scratch log.
"""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from teachable import stage
from teachable.core import resume
from teachable.core.params import Params
from teachable.labeling.label import first_round, label_chunk, more_rounds, run_prior
from teachable.core.records import Snapshot, read_jsonl, require_unique, write_json, write_jsonl
from teachable.rollout.engine import RolloutEngine
from teachable.policy.student import load_student
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
    logged = scratch.load()
    done = {r["snapshot_id"]: r for r in logged if not r.get("first_round")}  # records and dropped snapshots
    states = {r["snapshot_id"]: r for r in logged if r.get("first_round")}  # the posterior rule's pass 1
    todo = [s for s in snapshots if s.snapshot_id not in done]
    with stage_run("label", {k: v for k, v in key.items() if k != "snapshots_file"}) as mlflow:
        policy = load_student(params.student)
        engine = RolloutEngine(policy, env.name, env.max_steps, env.history_len, p.temperature, p.batch_size,
                               record_steps=False)
        started, prior = time.time(), None
        if p.stopping == "posterior":
            prior = label_in_two_passes(snapshots, states, done, scratch, policy, teacher, engine, params)
        else:
            label_in_one_pass(snapshots, todo, done, scratch, policy, teacher, engine, params)
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
                   **{f"teacher_{k}": v for k, v in getattr(teacher, "ledger", {}).items()},
                   **({"stopping": "posterior", "posterior_error": p.posterior_error, "posterior_prior":
                       prior.to_dict()} if prior is not None else {})}
        write_json(METRICS, metrics)
        mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    scratch.remove()


def _teacher_stopped(err: TeacherStopped, kept: str) -> TeacherStopped:
    """Budget, unusable answers, no answers, a revoked key: exit code 2. What is finished stays in the scratch log
    (and answers in the cache) for the next run."""
    return TeacherStopped(f"{err}; {kept} so far are kept, rerun to go on")


def _log_dropped(chunk, kept: dict, done: dict, scratch) -> None:
    """Snapshots of the chunk not in `kept` (its records, or its first-round states) were dropped by the teacher:
    remembered so a rerun does not ask again."""
    for snap in chunk:
        if snap.snapshot_id not in kept:
            scratch.append({"snapshot_id": snap.snapshot_id, "dropped": True})
            done[snap.snapshot_id] = {"dropped": True}


def label_in_one_pass(snapshots, todo, done, scratch, policy, teacher, engine, params) -> None:
    """The interval rule: each chunk labeled to the end (`label_chunk`), its records logged as they come."""
    p = params.label
    with tqdm(total=len(snapshots), initial=len(done), desc="labeling", unit="snapshot") as bar:
        for i in range(0, len(todo), p.chunk_size):
            chunk = todo[i : i + p.chunk_size]
            try:
                labeled = label_chunk(chunk, policy, teacher, engine, p, params.seed, params.quadrants.L_threshold)
            except TeacherStopped as err:
                raise _teacher_stopped(err, f"{len(done)} snapshots labeled") from None
            for record in labeled:
                scratch.append(record)
                done[record["snapshot_id"]] = record
            _log_dropped(chunk, done, done, scratch)
            bar.update(len(chunk))


def label_in_two_passes(snapshots, states, done, scratch, policy, teacher, engine, params):
    """The posterior rule: every snapshot's first round (logged state by state), the prior fitted once on all of
    them, then the rounds after, chunk by chunk. Returns the prior."""
    p = params.label
    todo = [s for s in snapshots if s.snapshot_id not in states and s.snapshot_id not in done]
    with tqdm(total=len(snapshots), initial=len(snapshots) - len(todo), desc="labeling: first rounds",
              unit="snapshot") as bar:
        for i in range(0, len(todo), p.chunk_size):
            chunk = todo[i : i + p.chunk_size]
            try:
                started = first_round(chunk, policy, teacher, engine, p, params.seed)
            except TeacherStopped as err:
                raise _teacher_stopped(err, f"{len(states)} snapshots' first rounds") from None
            for state in started:
                states[state["snapshot_id"]] = {**state, "first_round": True}
                scratch.append(states[state["snapshot_id"]])
            _log_dropped(chunk, states, done, scratch)
            bar.update(len(chunk))
    ordered = [states[s.snapshot_id] for s in snapshots if s.snapshot_id in states]  # not dropped
    prior = run_prior(ordered, p)
    rest = [state for state in ordered if state["snapshot_id"] not in done]
    with tqdm(total=len(ordered), initial=len(ordered) - len(rest), desc="labeling: more rounds",
              unit="snapshot") as bar:
        for i in range(0, len(rest), p.chunk_size):
            chunk = rest[i : i + p.chunk_size]
            for record in more_rounds(chunk, snapshots, engine, p, params.seed, params.quadrants.L_threshold, prior):
                scratch.append(record)
                done[record["snapshot_id"]] = record
            bar.update(len(chunk))
    return prior


if __name__ == "__main__":
    stage.run(main)
