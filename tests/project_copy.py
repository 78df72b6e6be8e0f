"""Shared by the end-to-end tests: the project as a fresh clone would have it, in a temporary git
repository, with tiny params; and stage scripts loaded as modules."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(base[key], value) if isinstance(value, dict) else value
    return out


def copy_project(work: Path, tiny: dict, env: dict | None = None):
    """Copy the tracked and untracked-but-not-ignored files (no outputs, no dvc.lock, no venv) to
    `work`, merge `tiny` into its params, commit it; return a `run(*cmd)` that runs there with its
    own MLflow database."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listed:
        if name != "dvc.lock" and (ROOT / name).is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, work / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (work / "params.yaml").write_text(yaml.safe_dump(merge(params, tiny)))
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        **(env or {}),
    }
    run = lambda *cmd: subprocess.run(  # noqa: E731
        cmd, cwd=work, env=env, capture_output=True, text=True
    )
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"],
    ):
        assert run(*cmd).returncode == 0
    return run


def load_stage(name: str):
    """A stage script as a module (its `main`, constants and helpers), without running it."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
