"""The label stage's bookkeeping: what decides reuse of its resume log, the two ways of labeling a
run through that log (records and first-round states appended as they come, so a killed run
restarted labels only the rest), and the stage's metrics."""

from __future__ import annotations

from tqdm.auto import tqdm

from teachable.core.params import LabelParams, Params
from teachable.core.resume import ScratchLog
from teachable.core.records import Snapshot
from teachable.labeling.label import first_round, label_chunk, more_rounds, run_prior
from teachable.labeling.posterior import Prior
from teachable.teacher.base import TeacherStopped

# Teacher keys that bound a run (budget, timeouts, prices, when to give up) but never change a
# label: a call that got no answer is asked again or stops the stage, never a fallback, so none of
# them can turn an answer into another. Left out of what decides reuse. (`retries`, re-asks after an
# unusable answer, can change a label: it stays in.)
BUDGET_KEYS = {
    "max_calls",
    "max_usd",
    "timeout_s",
    "client_retries",
    "usd_per_mtok_in",
    "usd_per_mtok_out",
    "max_fallback_fraction",
    "max_consecutive_failures",
}


def resume_key(params: Params) -> dict:
    """Every param the stage's results depend on: a resume log is reused only under the same
    ones."""
    key = params.model_dump(
        mode="json", include={"seed", "env", "shop", "student", "teacher", "label"}
    )
    key["teacher"] = {k: v for k, v in key["teacher"].items() if k not in BUDGET_KEYS}
    key["L_threshold"] = params.quadrants.L_threshold
    return key


def split_log(logged: list[dict]) -> tuple[dict, dict]:
    """A resume log's entries by snapshot id: (records and dropped snapshots, the posterior rule's
    first-round states)."""
    done = {r["snapshot_id"]: r for r in logged if not r.get("first_round")}
    states = {r["snapshot_id"]: r for r in logged if r.get("first_round")}
    return done, states


def label_metrics(
    snapshots: list[Snapshot],
    records: list[dict],
    n_this_run: int,
    minutes: float,
    teacher,
    prior: Prior | None,
    p: LabelParams,
) -> dict:
    """The stage's metrics: counts, rollouts, rate, leverage sides, the teacher's ledger, the
    posterior prior."""
    return {
        "n_labeled": len(records),
        "n_labeled_this_run": n_this_run,
        "rollouts": sum(r["rollouts"]["total"] for r in records),
        "mean_rollouts_per_arm": round(
            sum(r["rollouts"]["n_per_arm"] for r in records) / len(records), 3
        )
        if records
        else None,
        "snapshots_per_minute": round(n_this_run / minutes, 2) if n_this_run and minutes else None,
        **{
            f"L_side_{side}": sum(r.get("leverage", {}).get("side") == side for r in records)
            for side in ("high", "low", "undetermined")
        },
        "teacher_invalid": sum(not r["teacher"]["valid"] for r in records),
        "teacher_dropped": len(snapshots) - len(records),
        **{f"teacher_{k}": v for k, v in getattr(teacher, "ledger", {}).items()},
        **(
            {
                "stopping": "posterior",
                "posterior_error": p.posterior_error,
                "posterior_prior": prior.to_dict(),
            }
            if prior is not None
            else {}
        ),
    }


def _teacher_stopped(err: TeacherStopped, kept: str) -> TeacherStopped:
    """Budget, unusable answers, no answers, a revoked key: exit code 2. What is finished stays in
    the scratch log (and answers in the cache) for the next run."""
    return TeacherStopped(f"{err}; {kept} so far are kept, rerun to go on")


def _log_dropped(chunk, kept: dict, done: dict, scratch: ScratchLog) -> None:
    """Snapshots of the chunk not in `kept` (its records, or its first-round states) were dropped by
    the teacher: remembered so a rerun does not ask again."""
    for snap in chunk:
        if snap.snapshot_id not in kept:
            scratch.append({"snapshot_id": snap.snapshot_id, "dropped": True})
            done[snap.snapshot_id] = {"dropped": True}


def label_in_one_pass(snapshots, todo, done, scratch, policy, teacher, engine, params) -> None:
    """The interval rule: each chunk labeled to the end (`label_chunk`), its records logged as they
    come."""
    p = params.label
    with tqdm(total=len(snapshots), initial=len(done), desc="labeling", unit="snapshot") as bar:
        for i in range(0, len(todo), p.chunk_size):
            chunk = todo[i : i + p.chunk_size]
            try:
                labeled = label_chunk(
                    chunk, policy, teacher, engine, p, params.seed, params.quadrants.L_threshold
                )
            except TeacherStopped as err:
                raise _teacher_stopped(err, f"{len(done)} snapshots labeled") from None
            for record in labeled:
                scratch.append(record)
                done[record["snapshot_id"]] = record
            _log_dropped(chunk, done, done, scratch)
            bar.update(len(chunk))


def label_in_two_passes(
    snapshots, states, done, scratch, policy, teacher, engine, params
) -> Prior | None:
    """The posterior rule: every snapshot's first round (logged state by state), the prior fitted
    once on all of them, then the rounds after, chunk by chunk. Returns the prior."""
    p = params.label
    todo = [s for s in snapshots if s.snapshot_id not in states and s.snapshot_id not in done]
    with tqdm(
        total=len(snapshots),
        initial=len(snapshots) - len(todo),
        desc="labeling: first rounds",
        unit="snapshot",
    ) as bar:
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
    with tqdm(
        total=len(ordered),
        initial=len(ordered) - len(rest),
        desc="labeling: more rounds",
        unit="snapshot",
    ) as bar:
        for i in range(0, len(rest), p.chunk_size):
            chunk = rest[i : i + p.chunk_size]
            for record in more_rounds(
                chunk, snapshots, engine, p, params.seed, params.quadrants.L_threshold, prior
            ):
                scratch.append(record)
                done[record["snapshot_id"]] = record
            bar.update(len(chunk))
    return prior


def label_run(snapshots, done, states, scratch, policy, teacher, engine, params) -> Prior | None:
    """The run's labeling by its stopping rule, into `done` (and the resume log); the posterior
    rule's prior, or None."""
    if params.label.stopping == "posterior":
        return label_in_two_passes(
            snapshots, states, done, scratch, policy, teacher, engine, params
        )
    todo = [s for s in snapshots if s.snapshot_id not in done]
    label_in_one_pass(snapshots, todo, done, scratch, policy, teacher, engine, params)
    return None
