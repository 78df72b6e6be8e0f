"""dvc.yaml declares what each stage's result depends on, so DVC reruns exactly the stages whose
inputs changed.

1. Code: every `teachable` module a stage's script imports, directly or transitively (imports inside
   functions included, a package's `__init__.py` included), is covered by the stage's `deps` (the
   file, or a folder above it).
2. Params: a stage declares the keys it reads, not a whole section whose other keys never change its
   result.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "teachable"
# training stages: the launcher param
SCRIPT = re.compile(r"(?:\bpython|\$\{train\.launcher\})\s+(\S+\.py)\b")
TEMPLATE = re.compile(r"\$\{[^}]*\}")


def load_stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    """The file a dotted `teachable` module name runs: `a/b.py`, or `a/b/__init__.py` for a
    package."""
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def with_parents(name: str) -> list[str]:
    """Importing `a.b.c` runs `a/__init__.py`, `a/b/__init__.py`, then `a/b/c`."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def imported_modules(path: Path) -> set[str]:
    """Every `teachable` module an import anywhere in `path` (top level, functions, try blocks)
    runs."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    here = module_name(path) if path.is_relative_to(ROOT / PACKAGE) else ""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bases, names = [alias.name for alias in node.names], []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package (a package's is itself)
                package = here.split(".") if is_package else here.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            bases, names = [base], [alias.name for alias in node.names]
        else:
            continue
        for base in bases:
            if base != PACKAGE and not base.startswith(PACKAGE + "."):
                continue
            found.update(with_parents(base))
            for name in names:  # `from teachable.x import y`: y may be a submodule
                if name != "*" and module_file(f"{base}.{name}"):
                    found.add(f"{base}.{name}")
    return found


@cache
def closure(script: str) -> frozenset[Path]:
    """The script and every `teachable` module file it runs, transitively."""
    start = ROOT / script
    seen, todo = {start}, [start]
    while todo:
        for name in imported_modules(todo.pop()):
            path = module_file(name)
            assert path is not None, f"{name} imported but not found"
            if path not in seen:
                seen.add(path)
                todo.append(path)
    return frozenset(seen)


def dep_pattern(dep: str) -> re.Pattern:
    """A dep as a path pattern: a templated part (`${item.cell}`) matches any one path component
    part."""
    pieces = TEMPLATE.split(dep.rstrip("/"))
    return re.compile("[^/]+".join(map(re.escape, pieces)))


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    # the file and its folders
    candidates = ["/".join(rel.split("/")[: i + 1]) for i in range(rel.count("/") + 1)]
    return any(dep_pattern(dep).fullmatch(c) for dep in deps for c in candidates)


def stage_script(stage: dict) -> str:
    match = SCRIPT.search(stage["cmd"])
    assert match, f"no `python <script>.py` in cmd {stage['cmd']!r}"
    return match.group(1)


STAGES = load_stages()


def test_every_stage_is_checked():
    scripts = {name: stage_script(stage) for name, stage in STAGES.items()}
    assert set(scripts) >= {
        "student",
        "rollouts",
        "snapshots",
        "label",
        "train",
        "train_baseline",
        "evaluate_models",
    }
    for name, script in scripts.items():
        assert (ROOT / script).is_file(), f"stage {name}: {script} does not exist"


def test_a_stage_runs_the_script_of_its_name():
    """`dvc repro X` runs `stages/X.py`; only the training stages share one script (given the cell
    to train)."""
    shared = {"train", "train_baseline", "train_recovery"}
    wrong = {
        name: stage_script(stage)
        for name, stage in STAGES.items()
        if stage_script(stage) != ("stages/train.py" if name in shared else f"stages/{name}.py")
    }
    assert not wrong, f"stages whose script has another name: {wrong}"


def test_closure_follows_lazy_and_submodule_imports():
    # imports inside functions (the lazy environment registry), with each package's __init__ on the
    # way
    lazy = imported_modules(ROOT / "teachable/envs/__init__.py")
    assert {"teachable", "teachable.envs", "teachable.envs.babyai", "teachable.envs.shop"} <= lazy
    # `from teachable import stage` runs teachable/stage.py; `from teachable.x import name` does not
    # add x.name
    direct = imported_modules(ROOT / "stages/label.py")
    assert {
        "teachable",
        "teachable.stage",
        "teachable.labeling",
        "teachable.labeling.resumable",
    } <= direct
    assert "teachable.labeling.resumable.label_run" not in direct
    files = {p.relative_to(ROOT).as_posix() for p in closure("stages/student.py")}
    assert {
        "teachable/__init__.py",
        "teachable/training/student/build.py",
        "teachable/envs/shop/env.py",
    } <= files


@pytest.mark.heavy
def test_code_deps_cover_every_imported_module():
    missing = {}
    for name, stage in STAGES.items():
        deps = [d for d in stage.get("deps", []) if isinstance(d, str)]
        uncovered = sorted(
            p.relative_to(ROOT).as_posix()
            for p in closure(stage_script(stage))
            if not covered(p, deps)
        )
        if uncovered:
            missing[name] = uncovered
    assert not missing, "stages whose deps miss modules they run:\n" + "\n".join(
        f"  {name}: {', '.join(files)}" for name, files in missing.items()
    )


def declared_params(stage: dict) -> list[str]:
    """A stage's params as dotted keys; a whole file (`params.yaml:` with no keys) is the empty key
    ''."""
    keys = []
    for entry in stage.get("params", []):
        if isinstance(entry, str):
            keys.append(entry)
        else:
            for file, file_keys in entry.items():
                assert file == "params.yaml", f"params from {file}: extend this test"
                keys.extend(file_keys or [""])
    return keys


def depends_on(stage: dict, key: str) -> bool:
    """Whether a change to `key` reruns the stage: a declared key that is it, or a section (or file)
    above it."""
    return any(d == "" or key == d or key.startswith(d + ".") for d in declared_params(stage))


NOT_DEPENDS = {
    # budget, timeouts and prices never change a label, they only stop the stage
    "label": [
        "teacher.max_usd",
        "teacher.max_calls",
        "teacher.timeout_s",
        "teacher.client_retries",
        "teacher.usd_per_mtok_in",
        "teacher.usd_per_mtok_out",
        "teacher.max_fallback_fraction",
        "teacher.max_consecutive_failures",
    ],
    # a matrix cell reads its own item, not the lists that span the matrix (but train.quadrants:
    # with records_per_cell `min` every cell's size is the smallest trained quadrant's)
    "train": ["train.baselines", "train.formats"],
    "train_baseline": ["train.baselines", "train.formats"],
}


@pytest.mark.parametrize("name", sorted(NOT_DEPENDS))
def test_params_declare_keys_not_whole_sections(name):
    stage = STAGES[name]
    wrong = [key for key in NOT_DEPENDS[name] if depends_on(stage, key)]
    assert not wrong, f"stage {name} reruns when {wrong} change, which never change its result"


def test_params_keep_what_the_stage_reads():
    """The key-by-key lists still hold what these stages read (a guard against trimming too far)."""
    needed = {
        "label": [
            "seed",
            "env.name",
            "teacher.name",
            "teacher.model",
            "teacher.on_invalid",
            "label.temperature",
            "student.base_model",
        ],
        "train": [
            "seed",
            "student.base_model",
            "train.method",
            "train.lora_r",
            "train.learning_rate",
            "train.min_records",
        ],
        "train_baseline": [
            "seed",
            "student.dir",
            "train.method",
            "train.lora_r",
            "train.min_records",
        ],
        "micro_train": [
            "seed",
            "student.base_model",
            "student.device",
            "train.lora_r",
            "micro_train.n_steps",
        ],
        "select_snapshots": [
            "seed",
            "student.device",
            "train.method",
            "evaluate.n_tasks",
            "select.budget",
        ],
    }
    for name, keys in needed.items():
        absent = [key for key in keys if not depends_on(STAGES[name], key)]
        assert not absent, f"stage {name} does not declare {absent}"


@pytest.mark.heavy
def test_bytecode_written_by_running_the_code_is_not_part_of_a_code_dep():
    """Running a stage writes `__pycache__/*.pyc` into the `teachable` folders that are stages'
    deps; were DVC to hash them, every stage would look changed after any run (and in CI's fresh
    clone they would be absent again)."""
    pyc, source = (
        "teachable/labeling/__pycache__/label.cpython-311.pyc",
        "teachable/labeling/label.py",
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "check-ignore", pyc, source],
        cwd=ROOT,
        text=True,
        capture_output=True,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
    )
    assert result.stdout.split() == [pyc], result.stdout + result.stderr
