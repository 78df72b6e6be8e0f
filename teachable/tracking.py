"""MLflow tracking: one run per stage execution, tagged with the stage, the git revision, the DVC experiment and the
machine (CPU, torch threads, package versions: trained weights can differ across processors and library versions).

The tracking URI comes from MLFLOW_TRACKING_URI (the Makefile exports an absolute SQLite path); without it, a
SQLite file at the repository root is used, never the deprecated file store.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

EXPERIMENT = "teachable-moments"
SECRET_MARKERS = ("key", "token", "secret", "password")


def git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "tokenizers", "minigrid", "pyserini", "dvc")


@functools.cache
def machine_tags() -> dict[str, str]:
    """Where a run's numbers came from: the same params and seed give the same records only on the same CPU kind and
    package versions, so both are recorded with every run. Read once a process (the matrix opens a run per cell)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    tags = {"machine.cpu": cpu, "machine.torch_threads": str(torch.get_num_threads()),
            "machine.cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "version.python": platform.python_version()}
    for package in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            tags[f"version.{package}"] = version(package)
    return tags


def run_tags(stage: str) -> dict[str, str]:
    tags = {"stage": stage, "git_rev": git_rev(), **machine_tags()}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def flatten(params: dict, prefix: str = "") -> dict[str, str]:
    """Nested params -> dotted keys; values that look like secrets are never logged."""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif any(marker in key.lower() for marker in SECRET_MARKERS) and "max" not in key.lower():
            continue
        else:
            flat[name] = str(value)[:500]
    return flat


@contextlib.contextmanager
def stage_run(stage: str, params: dict) -> Iterator:
    """Open an MLflow run for one stage execution; yields the mlflow module for metric/artifact logging."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=stage, tags=run_tags(stage)):
        mlflow.log_params(flatten(params))
        yield mlflow


@contextlib.contextmanager
def matrix_cell_run(stage: str, cell: str, params: dict) -> Iterator:
    """A nested run for one matrix cell under one parent run per (stage, git revision, params)."""
    import hashlib
    import json

    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(EXPERIMENT)
    matrix_id = hashlib.sha256(json.dumps([stage, git_rev(), os.environ.get("DVC_EXP_NAME"), params],
                                          sort_keys=True).encode()).hexdigest()[:16]
    found = mlflow.search_runs(filter_string=f"tags.matrix_id = '{matrix_id}' and tags.role = 'parent'",
                               max_results=1)
    tags = {**run_tags(stage), "matrix_id": matrix_id}
    if len(found):
        parent_id = found.iloc[0]["run_id"]
    else:
        with mlflow.start_run(run_name=f"{stage} matrix", tags={**tags, "role": "parent"}) as parent:
            mlflow.log_params(flatten(params))
            parent_id = parent.info.run_id
    with mlflow.start_run(run_id=parent_id):
        with mlflow.start_run(run_name=cell, nested=True, tags={**tags, "role": "cell", "cell": cell}):
            mlflow.log_params(flatten(params))
            yield mlflow


def log_to_run(run_id: str, metrics: dict[str, float]) -> None:
    """Add metrics to an existing run (e.g. a training cell's run gets its evaluation numbers)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri())
    try:
        for name, value in metrics.items():
            if value is not None:
                client.log_metric(run_id, name, float(value))
    except MlflowException as err:  # e.g. outputs restored from the DVC cache into another tracking database
        logging.getLogger(__name__).warning("could not log to MLflow run %s: %s", run_id, err)
