"""The package's folders are its architecture: each part imports only the parts below it (a test, so
a new import that goes upward fails here instead of growing a cycle). Imports inside functions count
too."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "teachable"
BELOW = {  # part -> the parts it may import (besides itself)
    "core": set(),
    "envs": {"core"},
    "policy": {"core", "envs"},
    "teacher": {"core", "envs", "policy"},
    "rollout": {"core", "envs", "policy", "teacher"},
    "labeling": {"core", "envs", "policy", "teacher", "rollout"},
    "gates": {"core", "labeling"},
    "training": {"core", "envs", "policy", "teacher", "rollout", "labeling", "gates"},
    "evaluation": {"core", "envs", "policy", "teacher", "rollout", "labeling", "gates", "training"},
    "report": {"core", "labeling", "gates", "training", "evaluation"},
    # the planner: params, counts and gate power; it reads no report
    "plan": {"core", "labeling", "gates"},
    # commands: plan, show (report), pin (the student)
    "__main__": {"core", "policy", "plan", "report", "training"},
}


def imported_parts(path: Path) -> set[str]:
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "teachable":
            parts |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("teachable."):
            parts.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            parts |= {a.name.split(".")[1] for a in node.names if a.name.startswith("teachable.")}
    return parts


@pytest.mark.heavy
def test_every_part_imports_only_the_parts_below_it():
    wrong = {}
    for path in ROOT.rglob("*.py"):
        part = path.relative_to(ROOT).parts[0].removesuffix(".py")
        # the package marker and the stage runner (used by stages/ only)
        if part in ("__init__", "stage"):
            continue
        assert part in BELOW, f"{path}: a new part; add it to BELOW with the parts it may import"
        upward = imported_parts(path) - BELOW[part] - {part}
        if upward:
            wrong[str(path.relative_to(ROOT.parent))] = sorted(upward)
    assert not wrong, f"imports against the layering: {wrong}"


def test_the_top_level_holds_only_parts():
    loose = sorted(p.name for p in ROOT.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "stage.py"], loose
