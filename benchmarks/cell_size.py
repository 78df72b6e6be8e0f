"""Does a phase 2 cell learn, and at what size and learning rate? Held-out success of demo-format
adapters (the teacher's action at a snapshot) by number of training records and learning rate,
paired with the base student.

The pilot's cells hold 11 records (its smallest quadrant's training count), take 30 steps at batch 8
and, at lr 0.01, lower held-out success for every model (docs/RESULTS.md). This asks the question
the pilot should have chosen its learning rate on: on tasks that no pilot panel uses (`heldout`
seeds from `--task-offset` on, disjoint from phase 3's), which (records, lr) raise success over the
base? Every arm takes the same 30 steps, so records vary the data and not the update count. Records
are a seeded sample of the pilot's training snapshots (all quadrants; demo format), seed k's own
sample; every model plays the same episodes with the same sample seeds.

    python benchmarks/cell_size.py [--records 11 33 105] [--lrs 0.001 0.003 0.01] [--seeds 2] \
        [--tasks 200] [--labels teacher self]

`self` labels are the control: the same snapshots labelled with the student's own most likely action
(its `student_probs`), so an update that teaches nothing new; what it does to held-out success is
the cost of the update itself, apart from what the teacher's actions teach; teacher - self (paired
by task and seed) is what the teacher's actions add.

Needs the pilot's `data/quadrant_snapshots.jsonl` and `models/student` (`dvc pull` or `dvc repro
quadrants`). Prints, per arm, the mean success delta over seeds with a 95% t interval over tasks
(task-paired; the seeds' spread is shown beside it, not in the interval), and writes `--out` (JSON).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from teachable.core.params import load_params
from teachable.core.records import read_jsonl
from teachable.core.tasks import make_tasks, training_snapshots
from teachable.evaluation.panels import adapted, panel_sample_seed
from teachable.rollout.engine import RolloutEngine, RolloutSpec
from teachable.training.learning import t_interval
from teachable.training.lora import train_lora
from teachable.training.matrix import self_labelled, training_records, training_seed
from teachable.policy.student import load_student, student_path


def task_specs(levels: list[str], n_tasks: int, offset: int, seed: int) -> list[RolloutSpec]:
    tasks = make_tasks(levels, n_tasks, "heldout", base_seed=offset)
    return [
        RolloutSpec(
            f"cellsize|{t.task_id}",
            t.level,
            t.seed,
            sample_seed=panel_sample_seed(seed, f"cellsize|{t.task_id}"),
        )
        for t in tasks
    ]


def play(policy, adapter: str | None, specs: list[RolloutSpec], engine_kwargs: dict) -> np.ndarray:
    with adapted(policy, adapter) as p:
        episodes = RolloutEngine(p, **engine_kwargs).run(specs)
    by_id = {e.episode_id: e.success for e in episodes}
    return np.array([by_id[s.episode_id] for s in specs], dtype=float)


def interval(diffs: np.ndarray) -> list[float]:
    """The task-paired mean's 95% t interval (the project's `t_interval`), at 3 decimals."""
    return [round(bound, 3) for bound in t_interval(diffs)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, nargs="+", default=[11, 33, 105])
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.001, 0.003, 0.01])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument(
        "--task-offset", type=int, default=1000, help="first heldout task seed (phase 3 uses 0-99)"
    )
    parser.add_argument(
        "--labels", nargs="+", choices=["teacher", "self"], default=["teacher", "self"]
    )
    parser.add_argument("--out", default="benchmarks/cell_size.json")
    args = parser.parse_args()

    params = load_params()
    pool = sorted(
        training_snapshots(read_jsonl("data/quadrant_snapshots.jsonl")),
        key=lambda r: r["snapshot_id"],
    )
    policy = load_student(params.student)
    e, env = params.evaluate, params.env
    engine_kwargs = dict(
        env_name=env.name,
        max_steps=env.max_steps,
        history_len=env.history_len,
        temperature=e.temperature,
        batch_size=e.batch_size,
        action_mode=params.rollouts.action_mode,
    )
    specs = task_specs(env.levels, args.tasks, args.task_offset, params.seed)

    start = time.perf_counter()
    base = play(policy, None, specs, engine_kwargs)
    print(
        f"base: {base.mean():.3f} on {len(specs)} tasks ({time.perf_counter() - start:.0f} s)",
        flush=True,
    )
    arms, per_task = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        for n in args.records:
            for lr in args.lrs:
                train = params.train.model_copy(update={"learning_rate": lr})
                for labels in args.labels:
                    deltas, success = [], []
                    for k in range(args.seeds):
                        chosen = random.Random(f"cellsize|{n}|{k}").sample(pool, min(n, len(pool)))
                        chosen = [self_labelled(r) for r in chosen] if labels == "self" else chosen
                        out = Path(scratch) / f"n{n}-lr{lr}-{labels}-s{k}"
                        train_lora(
                            student_path(params.student),
                            training_records(chosen, "demo"),
                            train,
                            out,
                            checkpoint_dir=Path(scratch) / f"ckpt-{out.name}",
                            seed=training_seed(params.seed, k),
                            report=False,
                        )
                        wins = play(policy, str(out), specs, engine_kwargs)
                        success.append(float(wins.mean()))
                        deltas.append(wins - base)
                    # the seeds' mean, task by task
                    per_task[n, lr, labels] = np.mean(deltas, axis=0)
                    arm = {
                        "records": min(n, len(pool)),
                        "learning_rate": lr,
                        "labels": labels,
                        "steps": train.max_steps,
                        "success_by_seed": [round(x, 3) for x in success],
                        "delta": round(float(per_task[n, lr, labels].mean()), 3),
                        "interval_95": interval(per_task[n, lr, labels]),
                    }
                    if (
                        labels == "teacher"
                        and (n, lr, "self") in per_task
                        or labels == "self"
                        and (n, lr, "teacher") in per_task
                    ):
                        diff = per_task[n, lr, "teacher"] - per_task[n, lr, "self"]
                        arm["teacher_minus_self"] = {
                            "delta": round(float(diff.mean()), 3),
                            "interval_95": interval(diff),
                        }
                    arms.append(arm)
                    vs_self = (
                        "  teacher - self " + str(arm["teacher_minus_self"])
                        if "teacher_minus_self" in arm
                        else ""
                    )
                    print(
                        f"records {arm['records']:>3}  lr {lr:<6}  {labels:<7}  "
                        f"delta {arm['delta']:+.3f} {arm['interval_95']}  by seed "
                        f"{arm['success_by_seed']}{vs_self}  ({time.perf_counter() - start:.0f} s)",
                        flush=True,
                    )
    result = {
        "base_success": round(float(base.mean()), 3),
        "tasks": len(specs),
        "task_offset": args.task_offset,
        "seeds": args.seeds,
        "format": "demo",
        "batch_size": params.train.batch_size,
        "arms": arms,
        "seconds": round(time.perf_counter() - start),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
