"""Command line: `python -m teachable show SNAPSHOT_ID [--json] [--root DIR]`.

`show` prints one snapshot: the state text, the student's distribution over actions, the teacher's advice, the
leverage and CPT outcomes with their counts, the quadrant, and the trained models that used it. Exit code 2 for
an unknown id.
"""

from __future__ import annotations

import argparse
import json
import sys

from teachable.core.records import RecordError
from teachable.report.snapshot_data import UnknownSnapshot, describe
from teachable.report.snapshot_view import to_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m teachable", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="everything known about one snapshot")
    show.add_argument("snapshot_id", help="e.g. ep000002-s1 (see data/quadrant_snapshots.jsonl)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--root", default=".", help="repository root holding data/, models/, reports/")
    args = parser.parse_args(argv)
    try:
        view = describe(args.snapshot_id, args.root)
    except (UnknownSnapshot, RecordError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(view, indent=2, ensure_ascii=False) + "\n" if args.json else to_text(view))
    return 0


if __name__ == "__main__":
    sys.exit(main())
