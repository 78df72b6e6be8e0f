"""Resume logs for killed stages: scratch logs and checkpoint folders under `.scratch/`.

A scratch log (or checkpoint folder) is keyed by the params the caller passes AND by the content of
what the running stage depends on (`dependency_fingerprint`): its code, input data and models as
`dvc.yaml` lists them. A killed run restarted after any of them changed starts afresh instead of
mixing old results with new ones.

A process holds an exclusive lock on each scratch log or folder it uses (`hold`), until it removes
it or exits: a stage that outlived its `dvc repro` (SIGTERM to DVC alone orphans it) and the next
`dvc repro` never work on one resume log at once; the second stops with one line naming the first's
pid (`ScratchInUse`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import yaml

from teachable.core.records import RecordError, iter_jsonl

SCRATCH_DIR = Path(".scratch")
DVC_FILE = "dvc.yaml"
SKIPPED_PARTS = {"__pycache__", ".ipynb_checkpoints"}  # written by running the code, not part of it
SKIPPED_SUFFIXES = {".pyc", ".pyo"}
CHUNK = 1 << 20
log = logging.getLogger(__name__)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _files(path: Path) -> Iterable[Path]:
    if path.is_file():
        yield path
    elif path.is_dir():
        for child in sorted(path.rglob("*")):
            rel = child.relative_to(path)
            if (
                child.is_file()
                and not SKIPPED_PARTS & set(rel.parts)
                and child.suffix not in SKIPPED_SUFFIXES
            ):
                yield child


def hash_paths(root: Path, paths: Iterable[str]) -> tuple[str, int]:
    """sha256 over every named file's or folder's files (path and full content; byte caches skipped;
    a missing path counts as missing): the digest and the bytes read."""
    h, size = hashlib.sha256(), 0
    for name in sorted(set(paths)):
        path = root / name
        h.update(f"dep {name}\n".encode())
        if not path.exists():
            h.update(b"missing\n")
            continue
        for file in _files(path):
            h.update(f"{file.relative_to(root).as_posix()} {_file_digest(file)}\n".encode())
            size += file.stat().st_size
    return h.hexdigest(), size


def _scripts(cmd) -> set[Path]:
    """The .py files a dvc.yaml `cmd` (a string or a list of them) runs, relative to the dvc.yaml
    folder."""
    out = set()
    for line in cmd if isinstance(cmd, list) else [cmd]:
        try:
            tokens = shlex.split(str(line))
        except ValueError:
            tokens = str(line).split()
        out |= {Path(t) for t in tokens if t.endswith(".py") and "${" not in t}
    return out


def stage_deps(root: Path, script: Path) -> tuple[list[str], list[str]] | None:
    """The stages of `root/dvc.yaml` whose cmd runs `script`, and the union of their deps (a script
    shared by several stages, such as a matrix's cells, gets all of theirs); None when no stage runs
    it."""
    try:
        spec = yaml.safe_load((root / DVC_FILE).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    script = script.resolve()
    names, deps = [], set()
    for name, stage in (spec.get("stages") or {}).items():
        runs = isinstance(stage, dict) and any(
            (root / s).resolve() == script for s in _scripts(stage.get("cmd", ""))
        )
        if not runs:
            continue
        names.append(name)
        for dep in stage.get("deps") or []:
            deps |= {
                str(d) for d in (dep if isinstance(dep, dict) else [dep]) if "${" not in str(d)
            }
    return (names, sorted(deps)) if names else None


def _project_root(script: Path) -> Path | None:
    return next((d for d in script.resolve().parents if (d / DVC_FILE).is_file()), None)


def dependency_fingerprint(script: str | Path | None = None) -> str:
    """What a stage's output depends on besides its params: the content of the deps `dvc.yaml` lists
    for the stage(s) whose cmd runs `script` (the running one, `sys.argv[0]`, by default). Without a
    dvc.yaml above the script or a stage running it (a stage's `main` called from a test), the
    `teachable` package's source."""
    started = time.perf_counter()
    script = Path(script if script is not None else (sys.argv[0] or "-"))
    root = _project_root(script) if script.suffix == ".py" else None
    found = stage_deps(root, script) if root else None
    if found:
        names, deps = found
        digest, size = hash_paths(root, deps)
        what = (
            f"the deps of {DVC_FILE} stage{'s' * (len(names) > 1)} "
            f"{', '.join(names)} ({len(deps)} paths)"
        )
    else:
        package = Path(__file__).resolve().parents[1]  # teachable/
        digest, size = hash_paths(package.parent, [package.name])
        what = f"the {package.name} package source (no {DVC_FILE} stage runs {script})"
    log.info(
        "resume logs keyed by %s: %.1f MB hashed in %.2f s",
        what,
        size / 1e6,
        time.perf_counter() - started,
    )
    return f"{'dvc' if found else 'package'}:{digest}"


@functools.cache
def current_fingerprint() -> str:
    """`dependency_fingerprint()` of this process, computed once: a stage's resume logs all use the
    deps as they were when it first asked (`current_fingerprint.cache_clear()` to recompute)."""
    return dependency_fingerprint()


class ScratchInUse(RuntimeError):
    """Another live process holds the scratch log or folder (`hold`): `teachable.stage.run` says so
    in one line."""


LOCK_NAME = ".lock"
_held: dict[Path, int] = {}  # absolute scratch path -> the open lock file this process holds it by


def lock_path(path: Path) -> Path:
    """Where `path`'s lock lives: inside a folder (a checkpoint folder: nothing else to list beside
    it), beside a file (`<log>.lock`)."""
    return path / LOCK_NAME if not path.suffix else path.with_name(f"{path.name}{LOCK_NAME}")


def _secondary_rank() -> bool:
    """A process of `accelerate launch` / torchrun other than rank 0: it shares rank 0's checkpoint
    folder, whose lock rank 0 holds for the group."""
    return os.environ.get("RANK", "0") not in ("", "0")


def hold(path: Path) -> None:
    """Lock `path` (a scratch log or folder) for this process until `release` or exit (`fcntl.flock`
    on its lock file: the kernel drops it when the process dies, SIGKILL included). Re-entrant. Held
    by another live process: `ScratchInUse` naming its pid. Why: SIGTERM to `dvc repro` alone exits
    DVC and orphans the running stage, and the next `dvc repro` once ran beside it on the same
    resume log, labeling snapshots twice at once."""
    if _secondary_rank():
        return
    lock = lock_path(path)
    fd = _held.get(path.absolute())
    if fd is not None:
        with contextlib.suppress(OSError):
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                return
        release(path)  # its lock file was removed meanwhile: take a new one
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            other = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            who = f"process {other}" if other.isdigit() else "another process"
            raise ScratchInUse(
                f"{path} is in use by {who} (a run of this stage that outlived its `dvc repro`?): "
                f"wait for it to end or stop it{f' (kill {other})' if other.isdigit() else ''}, "
                "then rerun"
            ) from None
        with contextlib.suppress(OSError):
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break  # else the holder removed the file between our open and our lock: try again
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[path.absolute()] = fd


def release(path: Path) -> None:
    """Give up this process's lock on `path` (a no-op where it holds none)."""
    fd = _held.pop(path.absolute(), None)
    if fd is not None:
        os.close(fd)


def remove_scratch(path: Path) -> None:
    """Delete a scratch log or folder and its lock, then release the lock (in this order: nobody
    takes a lock on what is being deleted)."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    lock_path(path).unlink(missing_ok=True)
    release(path)


def scratch_path(name: str, key: dict, suffix: str = "") -> Path:
    """A path under .scratch/ unique to `name`, the JSON of `key` (params, data) and the running
    stage's deps (`current_fingerprint`): other params, code, data or models never mix in. No
    `suffix`: a folder (checkpoints), created. Locked for this process (`hold`)."""
    keyed = {"key": key, "deps": current_fingerprint()}
    digest = hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]
    SCRATCH_DIR.mkdir(parents=True, exist_ok=True)
    path = SCRATCH_DIR / f"{name}-{digest}{suffix}"
    if not suffix:
        path.mkdir(exist_ok=True)
    hold(path)
    return path


class ScratchLog:
    """Finished units of a long stage, appended one JSON line at a time under a name keyed by the
    stage's params and deps (`scratch_path`), so a killed run restarted with the same params, code,
    data and models skips what is done (and a change to any of them starts afresh)."""

    def __init__(self, stage: str, key: dict):
        self.stage = stage
        self.path = scratch_path(stage, key, ".jsonl")

    def load(self, model=None) -> list:
        if not self.path.exists():
            return []
        self._drop_torn_tail()
        try:
            return list(iter_jsonl(self.path, model))
        except RecordError as err:
            self._end_dead_runs()
            raise RecordError(
                f"{err}; this resume log of a killed run is damaged: delete it (rm {self.path}) to "
                "start the stage afresh (its finished work is redone)"
            ) from None

    def _end_dead_runs(self) -> None:
        """The damaged log stops the stage before it opens its MLflow run, which is where runs of
        this stage left RUNNING by a dead process are ended (KILLED): end them here, so the killed
        run is not left RUNNING."""
        from teachable.core.tracking import end_stale_runs_of

        end_stale_runs_of(self.stage)

    def _drop_torn_tail(self) -> None:
        """A kill mid-write can leave a partial last line; cut it so the log stays valid JSONL."""
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            self.path.write_bytes(data[: data.rfind(b"\n") + 1])

    def append(self, record) -> None:
        line = (
            record.model_dump_json() if hasattr(record, "model_dump_json") else json.dumps(record)
        )
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()

    def remove(self) -> None:
        remove_scratch(self.path)
