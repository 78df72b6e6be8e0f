"""The stage runner every `stages/*.py` script calls: logging, validated params, environments configured, and
bad input (params, records, snapshots, a teacher that cannot be used) ended with one clear line and exit code 2.
Resumable scratch logs are `teachable.core.resume`'s."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from teachable.core.params import Params, ParamsError, load_params
from teachable.core.records import InputError
from teachable.envs import RestoreError, configure_envs
from teachable.teacher.base import TeacherConfigError


class StageInputError(InputError):
    """A stage's input is readable but cannot be used (e.g. empty): said in one line, exit code 2."""


def run(main: Callable[[Params], None], params_path: str = "params.yaml") -> None:
    """Call `main(params)`; bad params, records or snapshots end the stage with one clear line and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        params = load_params(params_path)
        if params.gpus is not None:  # before anything touches CUDA, which reads it once
            os.environ["CUDA_VISIBLE_DEVICES"] = params.gpus
        configure_envs(params)
        main(params)
    except (ParamsError, InputError, RestoreError, TeacherConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
