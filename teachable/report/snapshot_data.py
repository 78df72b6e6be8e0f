"""One snapshot, everything known about it, gathered from the pipeline's files into a dict: the
state text the student saw, its distribution over actions, the teacher's advice, leverage and CPT
outcomes with their counts, the quadrant, and which trained models used it
(`teachable.report.snapshot_view` renders it)."""

from __future__ import annotations

import json
from pathlib import Path

from teachable.core.records import iter_jsonl

SNAPSHOT_FILES = (
    "data/quadrant_snapshots.jsonl",
    "data/labeled_snapshots.jsonl",
    "data/snapshots.jsonl",
)
CELLS_DIR = "models/phase2"
MICRO = "reports/phase1b/micro_training_results.json"
SELECTION = "reports/phase5/selection_summary.json"


class UnknownSnapshot(LookupError):
    """No snapshot with that id in any snapshot file."""


def find_snapshot(snapshot_id: str, root: Path) -> tuple[dict, str]:
    """The record of `snapshot_id` from the most labeled snapshot file that exists (and the file's
    path)."""
    tried = []
    for rel in SNAPSHOT_FILES:
        path = root / rel
        if not path.exists():
            continue
        tried.append(rel)
        for record in iter_jsonl(path):
            if record.get("snapshot_id") == snapshot_id:
                return record, rel
        break  # the most labeled file that exists is the reference; do not fall back to a stale one
    where = (
        ", ".join(tried)
        or f"none of {', '.join(SNAPSHOT_FILES)} exists (run `dvc repro quadrants` first)"
    )
    raise UnknownSnapshot(
        f"unknown snapshot id {snapshot_id!r} (searched: {where}). "
        "Ids look like 'ep000002-s1'; list them with\n"
        "  python -c \"import json; [print(json.loads(l)['snapshot_id']) "
        f"for l in open('{SNAPSHOT_FILES[0]}')]\"\n"
        "or open reports/detail.html, whose snapshot sections are anchored #snap-<id>."
    )


def list_snapshots(
    root: str | Path = ".", quadrant: str | None = None, split: str | None = None
) -> list[dict]:
    """One short row per snapshot of the most labeled snapshot file (id, task, step, quadrant,
    split, U, L_local, its side, the student's and the teacher's action), filtered by quadrant
    (`Q1`..`Q4`) and split."""
    root = Path(root)
    path = next((root / rel for rel in SNAPSHOT_FILES if (root / rel).exists()), None)
    if path is None:
        raise UnknownSnapshot(
            f"none of {', '.join(SNAPSHOT_FILES)} exists under {root} (run `dvc repro` first)"
        )
    rows = []
    for r in iter_jsonl(path):
        lev, q = r.get("leverage") or {}, (r.get("quadrant") or "")[:2]
        if (quadrant and q != quadrant) or (split and r.get("split") != split):
            continue
        rows.append(
            {
                "snapshot_id": r["snapshot_id"],
                "task_id": r.get("task_id"),
                "step": r.get("step_idx"),
                "quadrant": q,
                "split": r.get("split", ""),
                "U": r.get("U"),
                "L_local": lev.get("L_local"),
                "side": lev.get("side", ""),
                "student_action": r.get("student_action"),
                "teacher_action": (r.get("teacher") or {}).get("suggested_action"),
            }
        )
    return rows


def _load_json(path: Path):
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def training_uses(
    snapshot_id: str,
    root: Path,
    cells: dict | None = None,
    micro: list | None = None,
    selection: dict | None = None,
) -> dict:
    """Which trained models used the snapshot: phase 2 models (from their metrics.json
    `snapshot_ids`), the phase 1B micro-run on it (with its gain), and the phase 5 selection methods
    that picked it. Preloaded inputs may be passed in (the report does) to avoid rereading the files
    per snapshot."""
    if cells is None:
        cells = {
            p.parent.name: _load_json(p) or {}
            for p in sorted((root / CELLS_DIR).glob("*/metrics.json"))
        }
    if micro is None:
        data = _load_json(root / MICRO)
        micro = (data.get("results") if isinstance(data, dict) else data) or []
    if selection is None:
        selection = _load_json(root / SELECTION) or {}
    models = sorted(
        name for name, m in cells.items() if snapshot_id in (m.get("snapshot_ids") or [])
    )
    runs = [m for m in micro if m.get("snapshot_id") == snapshot_id]
    picked = sorted(
        name
        for name, m in (selection.get("methods") or {}).items()
        if snapshot_id in (m.get("snapshot_ids") or [])
    )
    missing_ids = sorted(name for name, m in cells.items() if "snapshot_ids" not in m)
    return {
        "phase2_models": models,
        "micro_training": runs[0] if runs else None,
        "selection_methods": picked,
        "phase2_models_without_ids": missing_ids,
    }


def describe(
    snapshot_id: str, root: str | Path = ".", record: dict | None = None, **preloaded
) -> dict:
    """Everything about one snapshot; `record` (and `training_uses`' inputs) may be passed in
    preloaded."""
    root = Path(root)
    record, source = (
        (record, SNAPSHOT_FILES[0]) if record is not None else find_snapshot(snapshot_id, root)
    )
    probs = record.get("student_probs") or {}
    return {
        "snapshot_id": snapshot_id,
        "source_file": source,
        "task": {
            k: record.get(k) for k in ("env", "task_id", "seed", "step_idx", "source", "split")
        },
        "state": {
            "mission": record.get("mission"),
            "history": record.get("history") or [],
            "obs": record.get("obs"),
            "valid_actions": record.get("valid_actions") or [],
            "student_action": record.get("student_action"),
        },
        "student_probs": sorted(probs.items(), key=lambda kv: -kv[1]),
        "U": record.get("U"),
        "uncertainty": record.get("uncertainty") or {},
        "teacher": record.get("teacher") or {},
        "patches": record.get("patches") or {},
        "leverage": record.get("leverage") or {},
        "cpt": record.get("cpt") or {},
        "quadrant": record.get("quadrant"),
        "training": training_uses(snapshot_id, root, **preloaded),
    }
