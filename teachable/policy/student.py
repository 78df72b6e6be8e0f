"""Loading the student: any HF causal LM, or the offline student `teachable.training.student` builds
when none is given, checked before it loads."""

from __future__ import annotations

import json
from pathlib import Path

from teachable.core.params import StudentParams
from teachable.core.records import InputError

WEIGHTS, WEIGHTS_INDEX = "model.safetensors", "model.safetensors.index.json"
TORCH_WEIGHTS, TORCH_WEIGHTS_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
# a fast tokenizer's one file, or what a slow tokenizer is built from (sentencepiece; BPE
# vocabulary + merges)
TOKENIZER_FILES = (("tokenizer.json",), ("tokenizer.model",), ("vocab.json", "merges.txt"))


class StudentDirError(InputError):
    """The student's model directory is missing, incomplete or damaged: one line naming the file and
    the fix."""


def student_path(params: StudentParams) -> str:
    """Where the student's weights are: the given base model, or the offline student's directory.
    The directory is checked first (`check_model_dir`), so a damaged one ends a stage with one line,
    not a library traceback."""
    path = params.base_model or params.dir
    # else a model id in the local Hugging Face cache
    if params.base_model is None or Path(path).exists():
        check_model_dir(path, remedy(params))
    return path


def load_student(params: StudentParams, in_process: bool = False):
    """The student as a scoring/generating policy: in-process on the configured device and dtype
    (`backend: hf`, or `in_process` for a stage that trains the weights, the micro-runs), or the
    inference server at `student.url` serving `base_model`, checked before any work is sent to
    it."""
    if params.backend == "hf" or in_process:
        from teachable.policy.hf import HFPolicy

        return HFPolicy.load(
            student_path(params), params.device, params.dtype, params.score_batch_size
        )
    from teachable.policy.server import server_policy

    policy = server_policy(
        params.backend,
        params.url,
        student_path(params),
        batch_size=params.score_batch_size,
        max_concurrency=params.max_concurrency,
        timeout_s=params.request_timeout_s,
        max_retries=params.max_retries,
    )
    policy.check()
    return policy


def remedy(params: StudentParams) -> str:
    if params.base_model:
        return "download the model again or fix `student.base_model` in params.yaml"
    return "rebuild it with `dvc repro student`"


def check_model_dir(path: str | Path, fix: str = "rebuild it with `dvc repro student`") -> None:
    """An HF model directory that will load: config, tokenizer and weights present, every
    safetensors file's header readable and its tensor data complete. Raises StudentDirError naming
    the file and `fix`."""
    d = Path(path)
    if not d.is_dir():
        what = "is not a directory" if d.exists() else "does not exist"
        raise StudentDirError(f"student model directory {d} {what}: {fix}")
    if not (d / "config.json").is_file():
        raise StudentDirError(
            f"{d / 'config.json'} is missing (not a complete model directory): {fix}"
        )
    if not any(all((d / name).is_file() for name in names) for names in TOKENIZER_FILES):
        raise StudentDirError(f"{d / 'tokenizer.json'} is missing (the student's tokenizer): {fix}")
    for file in weight_files(d, fix):
        if file.suffix == ".safetensors":
            check_safetensors(file, fix)


def weight_files(d: Path, fix: str) -> list[Path]:
    """The weight files the directory's index lists (sharded), or its single weights file."""
    for index_name in (WEIGHTS_INDEX, TORCH_WEIGHTS_INDEX):
        index = d / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                raise StudentDirError(
                    f"{index} is not a valid weights index ({err}): {fix}"
                ) from None
            missing = [name for name in shards if not (d / name).is_file()]
            if missing:
                raise StudentDirError(
                    f"{d / missing[0]} is missing ({len(missing)} of the {len(shards)} weight "
                    f"files {index.name} lists): {fix}"
                )
            return [d / name for name in shards]
    for name in (WEIGHTS, TORCH_WEIGHTS):
        if (d / name).is_file():
            return [d / name]
    raise StudentDirError(f"{d / WEIGHTS} is missing (the student's weights): {fix}")


def check_safetensors(file: Path, fix: str) -> None:
    """The header parses and the file holds exactly the tensor bytes it describes (a truncated copy
    does not)."""
    from safetensors import SafetensorError, safe_open

    size, problem = file.stat().st_size, None
    try:
        with safe_open(str(file), framework="pt") as fh:
            fh.keys()
    except (SafetensorError, OSError) as err:
        problem = f"its header cannot be read: {err}"
    expected = expected_size(file)
    if expected is not None and expected != size:
        problem = f"its header describes {expected} bytes, the file has {size}"
    if problem:
        raise StudentDirError(f"{file} is damaged or truncated ({problem}): {fix}")


def expected_size(file: Path) -> int | None:
    """The size a safetensors file's header describes (8-byte length, JSON header, tensor data), or
    None when the header itself cannot be read."""
    try:
        with file.open("rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                return None
            n = int.from_bytes(prefix, "little")
            if n > file.stat().st_size:
                return None
            header = json.loads(fh.read(n))
        ends = [t["data_offsets"][1] for name, t in header.items() if name != "__metadata__"]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return 8 + n + max(ends, default=0)
