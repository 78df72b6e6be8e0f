"""Data contracts between stages and their JSONL storage.

Records are pydantic models so a stage reading another stage's output checks its shape; field names
follow the seeds. Files are plain JSON lines (no pickles). A malformed line is reported with the
file name and line number.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError


class InputError(ValueError):
    """An input the stage cannot use (empty, inconsistent, a model directory that does not load): a
    stage ends with its one-line message and exit code 2 (`teachable.stage.run`)."""


class RecordError(InputError):
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
    # On a parse failure (generate mode) the step also carries `reply`, the raw text that named no
    # valid action; it is an extra field, absent from parsed steps, so score-mode records are
    # byte-for-byte what they were.


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
    # ended early in a greedy loop it could never leave (RolloutEngine.stop_cycles)
    cycled: bool = False
    # the action taken at the start state (forced, chosen or the expert's)
    first_action: str | None = None


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
_HUGE = re.compile(r"\d[eE]\+?\d{3}")  # a literal such as 1e999 that parses to inf


def non_finite_field(obj, where: str = "") -> tuple[str, float] | None:
    """The dotted name (list items by index) and value of the first NaN or infinite number in `obj`;
    None if all are finite."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (where, obj)
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    )
    for key, value in items:
        found = non_finite_field(value, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def _json_token(value: float) -> str:
    return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"


def iter_jsonl(path: str | Path, model: type[R] | None = None) -> Iterator[R | dict]:
    """Yield each record of a JSONL file; blank lines are skipped, bad lines raise RecordError
    naming file:line.

    NaN and infinite numbers (which Python's json reads and writes) are refused, naming the field:
    one NaN U once made the U threshold NaN and put every snapshot in Q3/Q4 without a word
    (issue 33)."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            constants = []
            try:
                obj = json.loads(
                    line, parse_constant=lambda name: constants.append(name) or float(name)
                )
            except json.JSONDecodeError as err:
                raise RecordError(
                    f"{path}:{lineno}: malformed JSON ({err.msg} at column {err.colno})"
                ) from None
            if (constants or _HUGE.search(line)) and (bad := non_finite_field(obj)):
                raise RecordError(
                    f"{path}:{lineno}: field '{bad[0]}' is {_json_token(bad[1])}, not a finite "
                    "number (records must hold finite numbers: fix or regenerate it)"
                )
            if model is None:
                yield obj
                continue
            try:
                yield model.model_validate(obj)
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise RecordError(
                    f"{path}:{lineno}: not a valid {model.__name__}: {where}: {first['msg']}"
                ) from None


def read_jsonl(path: str | Path, model: type[R] | None = None) -> list:
    return list(iter_jsonl(path, model))


def _line(record: BaseModel | dict) -> str:
    obj = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
    return json.dumps(obj, ensure_ascii=False, sort_keys=False) + "\n"


def write_jsonl(path: str | Path, records: Iterable[BaseModel | dict]) -> int:
    """Write atomically (temp file + rename) so a killed stage never leaves a half-written
    output."""
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


class MissingFieldError(RecordError):
    """A record without a field the reading stage needs."""


class DuplicateIdError(RecordError):
    """Two records with the same id where each must be unique (snapshots, episodes)."""


def record_lines(path: str | Path) -> list[int]:
    """The line number of each record `iter_jsonl` yields from `path` (blank lines hold none)."""
    with Path(path).open(encoding="utf-8") as fh:
        return [lineno for lineno, line in enumerate(fh, start=1) if line.strip()]


def _line_numbers(path: str | Path, lines: Iterable[int] | None) -> list[int]:
    if lines is not None:
        return list(lines)
    try:
        return record_lines(path)
    except OSError:
        return []


def _at(path: str | Path, lines: list[int], index: int) -> str:
    """`path:line` of the record at `index`, or `path, record n` where its line is not known."""
    return f"{path}:{lines[index]}" if index < len(lines) else f"{path}, record {index + 1}"


def _field(record: BaseModel | dict, name: str):
    """The value at a dotted field name (`leverage.L_local`); KeyError where any part is missing."""
    value = record
    for part in name.split("."):
        if isinstance(value, BaseModel) and part in (
            value.model_fields_set | set(type(value).model_fields) | set(value.model_extra or {})
        ):
            value = getattr(value, part)
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise KeyError(part)
    return value


def require_fields(
    records: list, fields: Iterable[str], path: str | Path, lines: Iterable[int] | None = None
) -> list:
    """`records` as read from `path` (in order, as `read_jsonl` gives them), checked to hold every
    one of `fields` (dotted names reach into nested objects) with a value other than null; else a
    MissingFieldError naming file, line and field. `lines`: each record's line number, where not
    those of `path` as it is now."""
    fields = list(fields)
    for index, record in enumerate(records):
        for name in fields:
            try:
                value = _field(record, name)
            except KeyError:
                value, problem = None, "has no field"
            else:
                problem = "has null for field"
            if value is None:
                raise MissingFieldError(
                    f"{_at(path, _line_numbers(path, lines), index)}: the record {problem} "
                    f"'{name}' (every record needs {', '.join(fields)})"
                )
    return records


def require_unique(
    records: list, field: str, path: str | Path, lines: Iterable[int] | None = None
) -> list:
    """`records` as read from (or about to be written to) `path`, checked to hold each value of
    `field` once; else a DuplicateIdError naming the value and both lines. `lines`: each record's
    line number, where not those of `path` as it is now (for records about to be written: `range(1,
    len(records) + 1)`)."""
    seen: dict = {}
    for index, record in enumerate(records):
        try:
            value = _field(record, field)
        except KeyError:
            raise MissingFieldError(
                f"{_at(path, _line_numbers(path, lines), index)}: the record has no field '{field}'"
            ) from None
        if value in seen:
            numbers = _line_numbers(path, lines)
            first = (
                f"line {numbers[seen[value]]}"
                if seen[value] < len(numbers)
                else f"record {seen[value] + 1}"
            )
            raise DuplicateIdError(
                f"{_at(path, numbers, index)}: duplicate {field} {value!r} (first on {first}): "
                f"each {field} must appear once"
            )
        seen[value] = index
    return records
