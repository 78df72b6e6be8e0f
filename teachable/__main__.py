"""teachable: look into a run and price one.

  teachable list [--quadrant Q1] [--split eval] [--sort U] [--limit N] [--json]
      the labeled snapshots
  teachable show SNAPSHOT_ID [--json] [--root DIR]
      one snapshot, all that is known
  teachable plan [-S key=value ...] [--preset seeds] [--device h100] [--json]
      what params cost, what they decide
  teachable pin [--params params.yaml]
      pin the built offline student
  teachable check-lock [--root DIR]
      whether dvc.lock lost committed stages

show prints the state text, the student's distribution over actions, the teacher's advice, the
leverage and CPT outcomes with their counts, the quadrant, and the trained models that used the
snapshot. plan prints what the params ask of each stage (episodes, calls, tokens, training steps,
teacher calls and dollars), the hours on a device profile, and whether the evaluation's n can decide
the phase 3-5 gates. pin records the offline student in student.dir (built by dvc repro student with
student.rebuild: true) as student.pinned, with its files' SHA-256 and build params, to be committed
so every machine uses this student. check-lock (run by make pilot before dvc repro) stops with one
line when dvc.lock differs from HEAD's and lacks stages it records: dvc repro would silently run
them again. Exit code 2 for an unknown id, bad params or lost stages.
Also runs as python -m teachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from teachable.core.params import ParamsError
from teachable.core.records import RecordError
from teachable.plan import planner
from teachable.report.snapshot_data import UnknownSnapshot, describe, list_snapshots
from teachable.report.snapshot_view import to_text


def run_plan(args: argparse.Namespace) -> int:
    try:
        params = planner.load(args.params, args.overrides, args.preset)
    except (ParamsError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    device = args.device or "cpu-2core"
    if args.calibrate:
        try:
            done = planner.calibrate(args.calibrate, args.throughput)
        except (planner.CalibrationError, OSError, KeyError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(
            f"calibrated profile {done['profile']} from {done['source']} ({done['device']}): "
            f"hf prefill MFU by batch {done['hf_prefill_mfu_by_batch']}, LoRA MFU by "
            f"batch {done['train_mfu_by_batch']}; written to {args.throughput}",
            file=sys.stderr,
        )
        device = args.device or done["profile"]
    out = planner.plan(
        params, device, args.backend, args.preset, args.throughput, args.teacher_concurrency
    )
    sys.stdout.write(json.dumps(out, indent=2) + "\n" if args.json else planner.to_text(out))
    return 0


def run_pin(args: argparse.Namespace) -> int:
    from teachable.core.params import load_params
    from teachable.policy.student import StudentDirError
    from teachable.training.student import pin

    try:
        params = load_params(args.params)
        s = params.student
        card = json.loads((Path(s.dir) / "card.json").read_text())
        if not s.pinned:
            raise ParamsError("student.pinned is null: set the directory to pin into")
        differ = pin.key_differences(card.get("build_key") or {}, pin.build_key(params))
        if differ:
            raise ParamsError(
                f"{s.dir} was built with other params than {args.params} "
                f"({', '.join(differ[:5])}): run `dvc repro student` with "
                "student.rebuild: true first"
            )
        record = pin.write_pin(s.dir, s.pinned, card["build_key"])
    except (ParamsError, StudentDirError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"pinned {s.dir} as {s.pinned} ({len(record['files'])} files); "
        f"commit it: git add {s.pinned}"
    )
    return 0


def run_check_lock(args: argparse.Namespace) -> int:
    from teachable.report.lockcheck import lost_stages, lost_stages_message

    lost = lost_stages(args.root)
    if lost:
        print(f"error: {lost_stages_message(lost)}", file=sys.stderr)
        return 2
    return 0


def run_list(args: argparse.Namespace) -> int:
    try:
        rows = list_snapshots(args.root, args.quadrant, args.split)
    except (UnknownSnapshot, RecordError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    if args.sort:
        rows.sort(key=lambda r: (r[args.sort] is None, -(r[args.sort] or 0)))
    rows = rows[: args.limit] if args.limit else rows
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return 0
    number = lambda x: "" if x is None else f"{x:.3f}"  # noqa: E731
    print(
        f"{'snapshot':<16} {'task':<20} {'step':>4} {'quad':<4} {'split':<5} "
        f"{'U':>6} {'L_local':>7} {'side':<12} student -> teacher"
    )
    for r in rows:
        print(
            f"{r['snapshot_id']:<16} {str(r['task_id']):<20} {str(r['step']):>4} "
            f"{r['quadrant']:<4} {r['split']:<5} {number(r['U']):>6} {number(r['L_local']):>7} "
            f"{r['side']:<12} {r['student_action']} -> {r['teacher_action']}"
        )
    print(f"{len(rows)} snapshots")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="teachable",
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser(
        "list", help="the labeled snapshots, one line each (quadrant, U, L_local, actions)"
    )
    listing.add_argument("--quadrant", choices=["Q1", "Q2", "Q3", "Q4"], help="only this quadrant")
    listing.add_argument(
        "--split", choices=["train", "eval"], help="only training or held-out snapshots"
    )
    listing.add_argument("--sort", choices=["U", "L_local"], help="largest first")
    listing.add_argument(
        "--limit", type=int, default=0, metavar="N", help="the first N rows (0: all)"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument("--root", default=".", help="repository root holding data/")
    show = commands.add_parser("show", help="everything known about one snapshot")
    show.add_argument("snapshot_id", help="e.g. ep000002-s1 (see data/quadrant_snapshots.jsonl)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument(
        "--root", default=".", help="repository root holding data/, models/, reports/"
    )
    plan = commands.add_parser(
        "plan", help="what a run costs per stage, and whether its n can decide the gates"
    )
    plan.add_argument(
        "-S",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a param, as `dvc exp run -S` (repeatable)",
    )
    plan.add_argument(
        "--params", default="params.yaml", help="the params file the overrides apply to"
    )
    plan.add_argument(
        "--preset", choices=sorted(planner.PRESETS), help="the seeds' full-scale N values"
    )
    plan.add_argument(
        "--device", choices=planner.DEVICES, help="default cpu-2core (with --calibrate: its GPU)"
    )
    plan.add_argument(
        "--backend",
        choices=planner.BACKENDS,
        default="hf",
        help="the student's engine (GPU profiles only)",
    )
    plan.add_argument(
        "--teacher-concurrency",
        type=int,
        default=1,
        metavar="K",
        help="teacher calls in flight (label makes them one at a time: 1)",
    )
    plan.add_argument(
        "--calibrate",
        metavar="GPU_JSON",
        help="fold benchmarks/gpu.py's --out JSON into the throughput file first",
    )
    plan.add_argument("--throughput", default=planner.THROUGHPUT, help="throughput figures (JSON)")
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    pin = commands.add_parser("pin", help="pin the built offline student (then commit it)")
    pin.add_argument(
        "--params", default="params.yaml", help="the params the student was built with"
    )
    check_lock = commands.add_parser(
        "check-lock", help="whether dvc.lock lost stages the committed one records"
    )
    check_lock.add_argument("--root", default=".", help="the project root (dvc.yaml, dvc.lock)")
    args = parser.parse_args(argv)
    if args.command == "plan":
        return run_plan(args)
    if args.command == "pin":
        return run_pin(args)
    if args.command == "list":
        return run_list(args)
    if args.command == "check-lock":
        return run_check_lock(args)
    try:
        view = describe(args.snapshot_id, args.root)
    except (UnknownSnapshot, RecordError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    sys.stdout.write(
        json.dumps(view, indent=2, ensure_ascii=False) + "\n" if args.json else to_text(view)
    )
    return 0


def cli() -> None:
    """The `teachable` console script (pyproject.toml)."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
