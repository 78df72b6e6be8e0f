"""Statistical efficiency of labeling: a fixed number of rollouts per arm vs sequential allocation, on the same
snapshots, judged against a high-n reference.

Each design labels the same snapshots with the pipeline's own `label_chunk`. A snapshot's leverage side (L_local
above or at/below `quadrants.L_threshold`) is compared with the side of a reference that spends `--reference`
rollouts on the student and forced arms. The fixed design calls every side by its point estimate; the sequential
design (rounds of `label.round_size` up to `label.max_rollouts`) calls a side once its interval clears the
threshold and, when the cap comes first, by its point estimate (reported apart as "undetermined").
Rollouts count the arms that decide the side: student, forced and the expert's one (the CPT arms get
`label.cpt_rollouts` in both designs).

    python benchmarks/allocation.py [--snapshots 40] [--reference 64] [--fixed 16]
"""

from __future__ import annotations

import argparse
import time

from teachable.core.params import load_params
from teachable.labeling.label import label_chunk
from teachable.policy.hf import HFPolicy
from teachable.core.records import Snapshot, read_jsonl
from teachable.rollout.engine import RolloutEngine
from teachable.teacher import OracleTeacher


def label_all(snapshots, policy, params, label_params) -> tuple[list[dict], float]:
    env = params.env
    engine = RolloutEngine(policy, env.name, env.max_steps, env.history_len, label_params.temperature,
                           label_params.batch_size, record_steps=False)
    start, records = time.perf_counter(), []
    for i in range(0, len(snapshots), label_params.chunk_size):
        records += label_chunk(snapshots[i : i + label_params.chunk_size], policy, OracleTeacher(), engine,
                               label_params, params.seed, params.quadrants.L_threshold)
    return records, time.perf_counter() - start


def point_side(record: dict, threshold: float) -> str:
    return "high" if record["leverage"]["L_local"] > threshold else "low"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snapshots", type=int, default=40)
    parser.add_argument("--reference", type=int, default=64, help="rollouts per arm of the reference")
    parser.add_argument("--fixed", type=int, default=24, help="rollouts per arm of the fixed design")
    args = parser.parse_args()
    params = load_params()
    t = params.quadrants.L_threshold
    snapshots = read_jsonl("data/snapshots.jsonl", Snapshot)[: args.snapshots]
    policy = HFPolicy.load(params.student.dir, batch_size=params.student.score_batch_size)
    p = params.label
    designs = {
        "reference": p.model_copy(update={"round_size": args.reference, "max_rollouts": args.reference,
                                          "skip_cpt": True}),
        "fixed": p.model_copy(update={"round_size": args.fixed, "max_rollouts": args.fixed, "skip_cpt": True}),
        "sequential": p.model_copy(update={"skip_cpt": True}),
    }
    results = {name: label_all(snapshots, policy, params, lp) for name, lp in designs.items()}
    truth = [point_side(r, t) for r in results["reference"][0]]
    print(f"{len(snapshots)} snapshots, L threshold {t}, horizon {p.horizon}; reference: {args.reference} rollouts "
          f"per arm (student, forced), its point-estimate side; reference sides: "
          f"{truth.count('high')} high / {truth.count('low')} low")
    print("| design | rollouts | seconds | agree with reference | undetermined at cap | rollouts per correct side |")
    print("|---|---|---|---|---|---|")
    per_correct = {}
    for name in ("fixed", "sequential"):
        records, seconds = results[name]
        sides = [r["leverage"]["side"] if name == "sequential" else "undetermined" for r in records]
        called = [s if s != "undetermined" else point_side(r, t) for s, r in zip(sides, records)]
        correct = sum(c == ref for c, ref in zip(called, truth))
        spent = sum(2 * r["rollouts"]["n_per_arm"] + 1 for r in records)  # student, forced, the expert's one
        undetermined = sides.count("undetermined") if name == "sequential" else "-"
        per_correct[name] = spent / max(correct, 1)
        label = (f"fixed, {args.fixed} per arm" if name == "fixed" else
                 f"sequential, rounds of {p.round_size} to {p.max_rollouts}")
        print(f"| {label} | {spent} | {seconds:.0f} | {correct}/{len(records)} | {undetermined} | "
              f"{per_correct[name]:.1f} |")
    decided = [(r["leverage"]["side"], ref) for r, ref in zip(results["sequential"][0], truth)
               if r["leverage"]["side"] != "undetermined"]
    print(f"sequential sides decided before the cap: {len(decided)}, of which agree with the reference: "
          f"{sum(s == ref for s, ref in decided)}")
    print(f"rollouts per correct side, sequential / fixed = {per_correct['sequential'] / per_correct['fixed']:.2f}")


if __name__ == "__main__":
    main()
