"""Data contracts between stages and their JSONL storage.

Records are pydantic models so a stage reading another stage's output checks its shape; field names follow the
seeds. Files are plain JSON lines (no pickles). A malformed line is reported with the file name and line number.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError


class RecordError(ValueError):
    """A JSONL line that is not valid JSON or does not match its record type."""


class Record(BaseModel):
    # Later stages add fields (labels, quadrants) to the same records; keep what they add.
    model_config = ConfigDict(extra="allow")


class Step(Record):
    obs: str
    valid_actions: list[str]
    action: str | None
    action_probs: dict[str, float] = {}
    parse_ok: bool = True
    state_hash: str = ""


class Episode(Record):
    episode_id: str
    env: str
    task_id: str
    seed: int
    policy: str
    mission: str = ""
    success: bool
    reward: float
    n_steps: int
    steps: list[Step] = []
    cycled: bool = False  # ended early in a greedy loop it could never leave (RolloutEngine.stop_cycles)
    first_action: str | None = None  # the action taken at the start state (forced, chosen or the expert's)


class EnvState(Record):
    """Everything needed to rebuild an environment state by deterministic replay."""

    level: str
    seed: int
    actions: list[str]


class Snapshot(Record):
    snapshot_id: str
    env: str
    task_id: str
    seed: int
    step_idx: int
    source: str  # student_failure | expert
    mission: str
    history: list[dict]  # prior {"obs", "action"} pairs the prompt shows
    obs: str
    valid_actions: list[str]
    student_action: str | None
    state: EnvState
    state_hash: str


class RetentionTask(Record):
    task_id: str
    env: str
    level: str
    seed: int
    n_steps: int


R = TypeVar("R", bound=BaseModel)


def iter_jsonl(path: str | Path, model: type[R] | None = None) -> Iterator[R | dict]:
    """Yield each record of a JSONL file; blank lines are skipped, bad lines raise RecordError naming file:line."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise RecordError(f"{path}:{lineno}: malformed JSON ({err.msg} at column {err.colno})") from None
            if model is None:
                yield obj
                continue
            try:
                yield model.model_validate(obj)
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise RecordError(f"{path}:{lineno}: not a valid {model.__name__}: {where}: {first['msg']}") from None


def read_jsonl(path: str | Path, model: type[R] | None = None) -> list:
    return list(iter_jsonl(path, model))


def _line(record: BaseModel | dict) -> str:
    obj = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
    return json.dumps(obj, ensure_ascii=False, sort_keys=False) + "\n"


def write_jsonl(path: str | Path, records: Iterable[BaseModel | dict]) -> int:
    """Write atomically (temp file + rename) so a killed stage never leaves a half-written output."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(_line(record))
                count += 1
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def write_json(path: str | Path, obj: dict) -> None:
    """Atomic JSON write (metrics, cards)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)
