"""A guard run before `dvc repro` by `make pilot`: a dvc.lock that lost stages.

A dvc.lock cut short (a crash or a full disk while it was written, a bad merge) can still be valid
YAML, and `dvc repro` then runs again every stage it no longer records, without a word: hours of the
pilot. `lost_stages` compares it with the committed one. Only a dvc.lock that git has in HEAD and
that differs from it is checked: a first run has none, and a pipeline committed part-way is what its
user meant. A stage counts as lost only while dvc.yaml still defines it, so removing a stage from
dvc.yaml is not a loss.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

LOCK, DVC_FILE = "dvc.lock", "dvc.yaml"


def _stage_names(text: str) -> list[str]:
    """The stage names of a dvc.yaml or dvc.lock text (a matrix cell as `train@Q1-demo`); none when
    it is not YAML, or not a mapping (DVC itself stops on such a file)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    stages = data.get("stages") if isinstance(data, dict) else None
    return list(stages) if isinstance(stages, dict) else []


def lost_stages(root: str | Path = ".") -> list[str]:
    """The stages HEAD's dvc.lock records that the working dvc.lock lacks (a deleted dvc.lock lacks
    them all) and dvc.yaml still defines; none when dvc.lock is not in HEAD or equals HEAD's."""
    root = Path(root)
    head = subprocess.run(["git", "show", f"HEAD:./{LOCK}"], cwd=root, capture_output=True)
    if head.returncode != 0:  # not committed, no commit yet, or not a git repository
        return []
    lock = root / LOCK
    current = lock.read_bytes() if lock.exists() else b""
    if current == head.stdout:
        return []
    kept = set(_stage_names(current.decode(errors="replace")))
    defined = (
        set(_stage_names((root / DVC_FILE).read_text())) if (root / DVC_FILE).exists() else set()
    )
    return [
        name
        for name in _stage_names(head.stdout.decode(errors="replace"))
        if name not in kept and name.split("@")[0] in defined
    ]


def lost_stages_message(lost: list[str]) -> str:
    return (
        f"dvc.lock lacks {len(lost)} stage(s) that the committed dvc.lock records "
        f"({', '.join(lost)}): `dvc repro` would run them again; restore them with "
        "`git checkout dvc.lock` (or run `dvc repro` yourself to re-run them)"
    )
