"""Stage `label` (phase 1): U, teacher advice, leverage (p_student, L_local, L_upper) and the
Contextual Patch Test for every snapshot; each snapshot's rollouts of a round run batched through
the rollout engine, in batches of its own so that records are the same whatever the chunk and
wherever a killed run resumed.

Output `data/labeled_snapshots.jsonl` and `reports/phase1/label_metrics.json`. Resumable: finished
snapshots are appended to a scratch log keyed by the params; a killed run restarted labels only the
rest. A teacher that cannot go on (budget spent, too many unusable answers, no answers, a key
revoked mid-run) stops the stage with one line and exit code 2; the finished snapshots are kept for
the rerun.

Under `label.stopping: posterior` the stage labels in two passes so that no record depends on
chunking: pass 1 runs every snapshot's first round (teacher advice and U as always) and logs each
state; the prior is fitted once on all first rounds (its parameters go to the metrics); pass 2 gives
the rounds after to the snapshots that need them. Both passes resume from the scratch log.
"""

from __future__ import annotations

import time

from teachable import stage
from teachable.core import resume
from teachable.core.params import Params
from teachable.core.records import Snapshot, read_jsonl, require_unique, write_json, write_jsonl
from teachable.labeling.resumable import label_metrics, label_run, resume_key, split_log
from teachable.rollout.engine import RolloutEngine
from teachable.policy.student import load_student
from teachable.teacher import make_teacher
from teachable.core.tracking import stage_run

SNAPSHOTS, OUT, METRICS = (
    "data/snapshots.jsonl",
    "data/labeled_snapshots.jsonl",
    "reports/phase1/label_metrics.json",
)


def main(params: Params) -> None:
    p, env = params.label, params.env
    # no key, a wrong key, no server, an unknown model: fails here, first
    teacher = make_teacher(params.teacher)
    snapshots = read_jsonl(SNAPSHOTS, Snapshot)
    require_unique([{"snapshot_id": s.snapshot_id} for s in snapshots], "snapshot_id", SNAPSHOTS)
    snapshots = snapshots[: p.max_snapshots]
    if not snapshots:
        raise stage.StageInputError(f"{SNAPSHOTS} holds no snapshots: nothing to label")
    key = resume_key(params)
    key["snapshots_file"] = [s.snapshot_id for s in snapshots]
    scratch = resume.ScratchLog("label", key)
    done, states = split_log(scratch.load())
    n_todo = sum(s.snapshot_id not in done for s in snapshots)
    with stage_run("label", {k: v for k, v in key.items() if k != "snapshots_file"}) as mlflow:
        policy = load_student(params.student)
        engine = RolloutEngine(
            policy,
            env.name,
            env.max_steps,
            env.history_len,
            p.temperature,
            p.batch_size,
            record_steps=False,
        )
        started = time.time()
        prior = label_run(snapshots, done, states, scratch, policy, teacher, engine, params)
        records = [done[s.snapshot_id] for s in snapshots if not done[s.snapshot_id].get("dropped")]
        write_jsonl(OUT, records)
        metrics = label_metrics(
            snapshots, records, n_todo, (time.time() - started) / 60, teacher, prior, p
        )
        write_json(METRICS, metrics)
        mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    scratch.remove()


if __name__ == "__main__":
    stage.run(main)
