"""What every stage script shares: logging, validated params, clean failure on bad input, resumable scratch logs."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from teachable.config import Params, ParamsError, load_params
from teachable.envs import RestoreError, configure_envs
from teachable.records import RecordError, iter_jsonl
from teachable.teacher.openai_teacher import TeacherConfigError

SCRATCH_DIR = Path(".scratch")


class StageInputError(ValueError):
    """A stage's input is readable but cannot be used (e.g. empty): said in one line, exit code 2."""


def run(main: Callable[[Params], None], params_path: str = "params.yaml") -> None:
    """Call `main(params)`; bad params, records or snapshots end the stage with one clear line and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        params = load_params(params_path)
        configure_envs(params)
        main(params)
    except (ParamsError, RecordError, RestoreError, StageInputError, TeacherConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def scratch_path(name: str, key: dict, suffix: str = "") -> Path:
    """A path under .scratch/ unique to `name` and the JSON of `key` (params, data): other keys never mix in."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    SCRATCH_DIR.mkdir(parents=True, exist_ok=True)
    return SCRATCH_DIR / f"{name}-{digest}{suffix}"


class ScratchLog:
    """Finished units of a long stage, appended one JSON line at a time under a name keyed by the stage's params,
    so a killed run restarted with the same params skips what is done (and other params never mix in)."""

    def __init__(self, stage: str, key: dict):
        self.path = scratch_path(stage, key, ".jsonl")

    def load(self, model=None) -> list:
        if not self.path.exists():
            return []
        self._drop_torn_tail()
        return list(iter_jsonl(self.path, model))

    def _drop_torn_tail(self) -> None:
        """A kill mid-write can leave a partial last line; cut it so the log stays valid JSONL."""
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            self.path.write_bytes(data[: data.rfind(b"\n") + 1])

    def append(self, record) -> None:
        line = record.model_dump_json() if hasattr(record, "model_dump_json") else json.dumps(record)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
