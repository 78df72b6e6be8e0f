"""MLflow tracking: one run per stage execution, tagged with the stage, the git revision, the DVC
experiment and the machine (CPU, torch threads, package versions: trained weights can differ across
processors and library versions).

The tracking URI comes from MLFLOW_TRACKING_URI (the Makefile exports an absolute SQLite path);
without it, a SQLite file at the repository root is used, never the deprecated file store. Artifacts
go to `mlruns/` beside that file, also in a copied or moved workspace (`_own_artifacts`); parallel
workers open it one at a time (`_database_lock`).

A run records the process that opened it (host, pid, the pid's start time). SIGTERM during a run
ends it `KILLED` (the stage unwinds with `Terminated`, exit code 143); a run whose process died
without a word (SIGKILL, power loss) is marked `KILLED` by the next start of the same stage on the
same host.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

EXPERIMENT = "teachable-moments"
SECRET_MARKERS = ("key", "token", "secret", "password")


def git_rev() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "tokenizers",
    "minigrid",
    "pyserini",
    "dvc",
)


@functools.cache
def machine_tags() -> dict[str, str]:
    """Where a run's numbers came from: the same params and seed give the same records only on the
    same CPU kind and package versions, so both are recorded with every run. Read once a process
    (the matrix opens a run per cell)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    tags = {
        "machine.cpu": cpu,
        "machine.torch_threads": str(torch.get_num_threads()),
        "machine.cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "version.python": platform.python_version(),
    }
    for package in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            tags[f"version.{package}"] = version(package)
    return tags


def run_tags(stage: str) -> dict[str, str]:
    tags = {"stage": stage, "git_rev": git_rev(), **machine_tags()}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


class Terminated(SystemExit):
    """SIGTERM during a tracked run: raised in the main thread so the stage unwinds (its `finally`
    blocks run, its run ends `KILLED`) and the process exits with 128 + the signal number."""


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of a process from /proc; None where there is no
    such entry."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]


def process_tags() -> dict[str, str]:
    """Which process holds a run: the next start of its stage tells a dead one from a live one by
    these."""
    stat = _proc_stat(os.getpid())
    return {
        "process.host": socket.gethostname(),
        "process.pid": str(os.getpid()),
        "process.start": stat[1] if stat else "",
    }


def process_gone(tags: dict[str, str]) -> bool:
    """True when the process a run's tags name is known to have ended: same host, and no such pid, a
    zombie, or a pid since reused by a process started at another time. False where it cannot be
    told (other host, no tags)."""
    host, pid = tags.get("process.host"), tags.get("process.pid", "")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    stat = _proc_stat(int(pid))
    if stat is None:
        if _proc_stat(os.getpid()) is not None:  # /proc works here: the pid is gone
            return True
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    state, started = stat
    return state in ("Z", "X") or (
        bool(tags.get("process.start")) and started != tags["process.start"]
    )


def end_stale_runs(stage: str, experiment_id: str) -> list[str]:
    """Mark `KILLED` the runs of `stage` in the experiment still `RUNNING` whose process is gone;
    their ids."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri())
    running = f"tags.stage = '{stage}' and attributes.status = 'RUNNING'"
    runs = client.search_runs([experiment_id], filter_string=running, max_results=5000)
    ended = []
    for run in runs:
        if process_gone(run.data.tags):
            client.set_tag(
                run.info.run_id, "ended_by", "the next start of the stage: its process was gone"
            )
            client.set_terminated(run.info.run_id, "KILLED")
            ended.append(run.info.run_id)
    if ended:
        logging.getLogger(__name__).warning(
            "marked %d run(s) of stage %s KILLED (their process had died): %s",
            len(ended),
            stage,
            ", ".join(ended),
        )
    return ended


@contextlib.contextmanager
def terminate_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` in the main thread (once: a second one during
    the unwinding is ignored); the previous handler is back afterwards. Elsewhere than the main
    thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def tracked_run(mlflow, **start_kwargs) -> Iterator:
    """`mlflow.start_run(**start_kwargs)` ended FINISHED, FAILED on an error, or KILLED on SIGTERM
    or Ctrl-C."""
    with terminate_raises():
        run = mlflow.start_run(**start_kwargs)
        status = "FAILED"
        try:
            yield run
            status = "FINISHED"
        except (Terminated, KeyboardInterrupt):
            status = "KILLED"
            raise
        finally:
            active = mlflow.active_run()
            if active is not None and active.info.run_id == run.info.run_id:
                mlflow.end_run(status)


def end_stale_runs_of(stage: str) -> list[str]:
    """`end_stale_runs` for a stage that stops before opening its run (e.g. on a damaged resume
    log), so its killed predecessor's run is not left RUNNING. Best effort: it never hides the error
    that stops the stage."""
    try:
        from mlflow.tracking import MlflowClient

        with _database_lock(tracking_uri()):  # a fresh database gets its tables here
            experiment = MlflowClient(tracking_uri()).get_experiment_by_name(EXPERIMENT)
        return end_stale_runs(stage, experiment.experiment_id) if experiment else []
    except Exception as err:  # noqa: BLE001
        logging.getLogger(__name__).warning("could not end stale MLflow runs of %s: %s", stage, err)
        return []


class TrackingError(RuntimeError):
    """The MLflow database cannot be used (corrupt, not a database): `teachable.stage.run` says so
    in one line."""


def _database_error(err: BaseException) -> bool:
    """Whether an error (or one it came from) is SQLite's / SQLAlchemy's: a database that cannot be
    read."""
    import sqlite3

    from sqlalchemy.exc import DatabaseError

    while err is not None:
        if isinstance(err, (DatabaseError, sqlite3.DatabaseError)):
            return True
        err = err.__cause__ or err.__context__
    return False


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a SQLite tracking URI; None for a tracking server or another backend."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def _database_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on a file beside the SQLite database (none for another backend).
    Parallel workers (`dvc queue start -j N`) starting on a fresh database each created MLflow's
    tables and the experiment at once, and all but one failed ("table runs already exists"); under
    the lock the first creates them, the others find them. `flock`: workers on one host (not across
    machines sharing a network disk)."""
    db = _sqlite_file(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def _own_artifacts(db: Path, experiment) -> None:
    """Point the experiment's artifacts at `mlruns/` beside its database when they point into
    another directory's. MLflow stores the artifact location of an experiment (and of each run under
    it) as the absolute path it had when the experiment was created, and has no call to change it: a
    copied or moved workspace wrote its artifacts into the original's `mlruns/` (recreating it when
    gone). A location in MLflow's own layout (`<dir>/mlruns/<id>`) elsewhere is rewritten in the
    database, with its runs' (their files were copied with the workspace); another (a server's
    store, one chosen on purpose) is left alone. Beside the database, not the working directory:
    `dvc queue` workers run in temporary copies and write to the workspace's database (the
    Makefile's URI)."""
    stored, experiment_id = experiment.artifact_location, experiment.experiment_id
    if "://" in stored and not stored.startswith("file://"):
        return
    old, own = (
        Path(stored.removeprefix("file://")),
        Path(os.path.abspath(db.parent / "mlruns" / experiment_id)),
    )
    if old.name != experiment_id or old.parent.name != "mlruns" or old.resolve() == own.resolve():
        return
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        con.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
            (str(own), experiment_id),
        )
        con.execute(
            "UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) WHERE experiment_id = ? "
            "AND substr(artifact_uri, 1, ?) = ?",
            (str(own), len(stored) + 1, experiment_id, len(stored), stored),
        )
    logging.getLogger(__name__).info(
        "MLflow artifacts of %s now go to %s (were %s)", EXPERIMENT, own, stored
    )


def _open_experiment(stage: str):
    """MLflow at `tracking_uri()`, on the project's experiment with its artifacts in this workspace,
    runs of dead processes ended. A corrupt database once gave a SQLAlchemy traceback:
    `TrackingError` says which file and what to do."""
    import mlflow

    uri = tracking_uri()
    try:
        mlflow.set_tracking_uri(uri)
        with _database_lock(uri):
            experiment = mlflow.set_experiment(EXPERIMENT)
            if _sqlite_file(uri) is not None:
                _own_artifacts(_sqlite_file(uri), experiment)
        end_stale_runs(stage, experiment.experiment_id)
    except Exception as err:
        if not _database_error(err):
            raise
        path = uri.removeprefix("sqlite:///")
        cause = " ".join(str(getattr(err, "orig", None) or err).split())[:120]
        raise TrackingError(
            f"the MLflow database {path} cannot be read ({cause}): move it aside (mv {path} "
            f"{path}.bad) to start a new one, or set MLFLOW_TRACKING_URI to another, and rerun"
        ) from None
    return mlflow


def tracking_uri() -> str:
    return (
        os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"
    )


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
    """Open an MLflow run for one stage execution; yields the mlflow module for metric/artifact
    logging. Runs of the stage left RUNNING by a dead process are marked KILLED first; SIGTERM ends
    this one KILLED."""
    mlflow = _open_experiment(stage)
    with tracked_run(mlflow, run_name=stage, tags={**run_tags(stage), **process_tags()}):
        mlflow.log_params(flatten(params))
        yield mlflow


@contextlib.contextmanager
def matrix_cell_run(stage: str, cell: str, params: dict) -> Iterator:
    """A nested run for one matrix cell under one parent run per (stage, git revision, params)."""
    import hashlib
    import json

    mlflow = _open_experiment(stage)
    matrix_id = hashlib.sha256(
        json.dumps(
            [stage, git_rev(), os.environ.get("DVC_EXP_NAME"), params], sort_keys=True
        ).encode()
    ).hexdigest()[:16]
    found = mlflow.search_runs(
        filter_string=f"tags.matrix_id = '{matrix_id}' and tags.role = 'parent'", max_results=1
    )
    tags = {**run_tags(stage), "matrix_id": matrix_id}
    if len(found):
        parent_id = found.iloc[0]["run_id"]
    else:
        parent_tags = {**tags, **process_tags(), "role": "parent"}
        with tracked_run(mlflow, run_name=f"{stage} matrix", tags=parent_tags) as parent:
            mlflow.log_params(flatten(params))
            parent_id = parent.info.run_id
    with tracked_run(mlflow, run_id=parent_id):
        mlflow.set_tags(process_tags())  # the parent is RUNNING again, held by this process
        cell_tags = {**tags, **process_tags(), "role": "cell", "cell": cell}
        with tracked_run(mlflow, run_name=cell, nested=True, tags=cell_tags):
            # the trainer's MLflow callback logs its own `seed` (the cell's training seed) on this
            # run
            mlflow.log_params(
                {("pipeline_seed" if k == "seed" else k): v for k, v in flatten(params).items()}
            )
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
    # e.g. outputs restored from the DVC cache into another tracking database
    except MlflowException as err:
        logging.getLogger(__name__).warning("could not log to MLflow run %s: %s", run_id, err)
