"""Read every upstream output the report uses. A file that is missing (its phase not run) or
unreadable is `None` plus a line in `Inputs.problems`, so the report shows "not run" for that
section instead of failing."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from teachable.core.records import RecordError, read_jsonl

log = logging.getLogger(__name__)

# Every path the report reads, relative to the repository root (these are the `report` stage's
# deps).
PATHS = {
    "snapshots": "data/quadrant_snapshots.jsonl",
    "thresholds": "reports/phase1/quadrant_thresholds.json",
    "quadrant_metrics": "reports/phase1/quadrant_metrics.json",  # gates.quadrant_balance
    "micro": "reports/phase1b/micro_training_results.json",
    "cpt": "reports/phase1b/cpt_correlation.json",
    "training_summary": "reports/phase2/training_summary.json",
    "cells": "models/phase2",  # <model>/metrics.json: snapshot_ids per trained model
    "student_card": "models/student/card.json",
    # the rollouts stage: success and parse-failure rate
    "phase0_metrics": "reports/phase0/metrics.json",
    "phase0_failures": "reports/phase0/parse_failures.json",  # and its first unparseable replies
    "overall": "reports/phase3/overall_task_results.csv",
    "per_quadrant": "reports/phase3/per_quadrant_results.csv",
    "transfer": "reports/phase3/transfer_matrix.csv",
    "retention": "reports/phase3/retention_results.csv",
    "stuckness": "reports/phase3/stuckness_results.csv",
    "phase3_metrics": "reports/phase3/metrics.json",
    "pass_k": "reports/phase3/pass_k.csv",
    "predictor": "reports/phase4/training_result.json",
    "ranking": "reports/phase4/ranking_curves.csv",
    # out-of-fold predicted ELP_net: Fig H6.1's intervals
    "oof": "reports/phase4/oof_predictions.csv",
    "selection": "reports/phase5/selection_summary.json",
    "selection_results": "reports/phase5/selection_results.csv",
}


@dataclass
class Inputs:
    snapshots: list[dict] | None = None
    thresholds: dict | None = None
    quadrant_metrics: dict | None = None
    micro: list[dict] | None = None
    cpt: dict | None = None
    training_summary: dict | None = None
    cells: dict[str, dict] | None = None  # model id -> its metrics.json
    student_card: dict | None = None
    phase0_metrics: dict | None = None
    phase0_failures: dict | None = None
    overall: pd.DataFrame | None = None
    per_quadrant: pd.DataFrame | None = None
    transfer: pd.DataFrame | None = None
    retention: pd.DataFrame | None = None
    stuckness: pd.DataFrame | None = None
    phase3_metrics: dict | None = None
    pass_k: pd.DataFrame | None = None
    predictor: dict | None = None
    ranking: pd.DataFrame | None = None
    oof: pd.DataFrame | None = None
    selection: dict | None = None
    selection_results: pd.DataFrame | None = None
    problems: list[str] = field(default_factory=list)  # "path: missing" / "path: unreadable (...)"

    def source(self, name: str) -> str:
        return PATHS[name]


def _json(path: Path):
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def _micro(path: Path) -> list[dict]:
    data = _json(path)
    # {"results": [...]} today; a bare list also works
    return data["results"] if isinstance(data, dict) else data


def _cells(path: Path) -> dict[str, dict]:
    cells = {p.parent.name: _json(p) for p in sorted(path.glob("*/metrics.json"))}
    if not cells:
        raise FileNotFoundError(path)
    return cells


READERS = {"snapshots": read_jsonl, "micro": _micro, "cells": _cells}


def load_inputs(root: str | Path = ".") -> Inputs:
    """Everything under `root` that the report can use; absent or broken files become None (see
    `problems`)."""
    root = Path(root)
    inputs = Inputs()
    for name, rel in PATHS.items():
        path = root / rel
        if not path.exists():
            inputs.problems.append(f"{rel}: missing")
            continue
        reader = READERS.get(name) or (pd.read_csv if rel.endswith(".csv") else _json)
        try:
            setattr(inputs, name, reader(path))
        except (
            OSError,
            ValueError,
            KeyError,
            TypeError,
            RecordError,
            pd.errors.ParserError,
        ) as err:
            log.warning("%s unreadable: %s", rel, err)
            inputs.problems.append(f"{rel}: unreadable ({err})")
    return inputs


def gate_verdict(document: dict | None, key: str) -> dict | None:
    """The verdict `gates[key]` a stage wrote into its metrics file
    (`teachable.gates.core.verdict`), or None when the file, its `gates` or that verdict is absent
    (an older file, or the phase not run)."""
    gates = document.get("gates") if isinstance(document, dict) else None
    verdict = gates.get(key) if isinstance(gates, dict) else None
    return verdict if isinstance(verdict, dict) else None


def snapshot_frame(records: list[dict]) -> pd.DataFrame:
    """One row per labeled snapshot with the numbers the figures and tables use."""
    rows = []
    for r in records:
        lev, cpt = r.get("leverage") or {}, r.get("cpt") or {}
        rows.append(
            {
                "snapshot_id": r["snapshot_id"],
                "quadrant": r.get("quadrant"),
                "split": r.get("split"),
                "task_id": r.get("task_id"),
                "U": r.get("U"),
                "L_local": lev.get("L_local"),
                "L_upper": lev.get("L_upper"),
                "p_student": lev.get("p_student"),
                "ELP_net": cpt.get("ELP_net"),
                "route_net": cpt.get("route_net"),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "snapshot_id",
            "quadrant",
            "split",
            "task_id",
            "U",
            "L_local",
            "L_upper",
            "p_student",
            "ELP_net",
            "route_net",
        ],
    )
