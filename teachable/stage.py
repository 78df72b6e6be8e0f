"""The stage runner every `stages/*.py` script calls: logging, validated params, environments
configured, and bad input (params, records, snapshots, a teacher that cannot be used), a disk it
cannot write (read-only, full), an MLflow database it cannot read, or a resume log another live
process holds ended with one clear line and exit code 2. Resumable scratch logs are
`teachable.core.resume`'s."""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from teachable.core.params import Params, ParamsError, load_params
from teachable.core.records import InputError
from teachable.core.resume import ScratchInUse
from teachable.core.tracking import TrackingError
from teachable.envs import RestoreError, configure_envs
from teachable.teacher.base import TeacherConfigError


class StageInputError(InputError):
    """A stage's input is readable but cannot be used (e.g. empty): said in one line, exit
    code 2."""


def run(main: Callable[[Params], None], params_path: str = "params.yaml") -> None:
    """Call `main(params)`; bad params, records or snapshots end the stage with one clear line and
    exit code 2."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    try:
        params = load_params(params_path)
        if params.gpus is not None:  # before anything touches CUDA, which reads it once
            os.environ["CUDA_VISIBLE_DEVICES"] = params.gpus
        set_threads(params.threads)
        configure_envs(params)
        main(params)
    except (
        ParamsError,
        InputError,
        RestoreError,
        TeacherConfigError,
        FileNotFoundError,
        ScratchInUse,
        TrackingError,
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        message = disk_error(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def set_threads(threads: int | None) -> None:
    """torch's intra-op CPU threads for this stage (`threads`; None leaves torch's own choice, which
    honours OMP_NUM_THREADS). Threads that outnumber the free cores spin and cost wall time on a
    shared machine."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def disk_error(err: OSError) -> str | None:
    """One line with the fix for an error of the disk the stage writes to (a read-only folder, a
    full disk); None for any other OSError, which keeps its traceback. These once ended a stage with
    a traceback."""
    name = err.filename or ""
    where = f" ({name})" if name else ""
    folder = Path(name).parent if name else Path(".")
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"no space left on the device{where}: free space there (old .scratch/ "
            "folders, `dvc gc`) and rerun; finished work in .scratch/ is kept"
        )
    if err.errno == errno.EROFS:
        return f"read-only file system{where}: run the stage from a writable checkout"
    if err.errno in (errno.EACCES, errno.EPERM):
        return (
            f"permission denied{where}: make {folder}/ writable for this "
            f"user (chmod -R u+w {folder}) and rerun"
        )
    return None
