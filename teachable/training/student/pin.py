"""The pinned offline student: built once, kept with the repository, used by every machine.

Each CPU's floating point trains a slightly different student from the same params (three CPUs gave
three students and gates that disagreed), so the pilot's student is not rebuilt on every machine. A
pin is a directory committed to git: the HF model files plus `pin.json`, which holds the params that
define the build (`build_key`) and the SHA-256 of every file. The `student` stage copies a pin whose
key equals the current params' (after checking every file against its hash) instead of training,
exactly as a downloaded model is used at paper scale.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
from pathlib import Path

from teachable.core.params import Params
from teachable.policy.student import StudentDirError, check_model_dir

PIN_FILE = "pin.json"
# student params that say where or how a model is served, not what is built
RUNTIME_KEYS = {
    "base_model",
    "dir",
    "device",
    "dtype",
    "score_batch_size",
    "backend",
    "url",
    "max_concurrency",
    "request_timeout_s",
    "max_retries",
    "pinned",
    "rebuild",
    "success_band",
}


def build_key(params: Params) -> dict:
    """Every param the offline student's build depends on: the seed, the environment (and its own
    section for the shop and retail domains) and the student's build keys."""
    key = params.model_dump(mode="json", include={"seed", "env", "student"})
    key["student"] = {k: v for k, v in key["student"].items() if k not in RUNTIME_KEYS}
    if params.env.name in ("shop", "retail"):
        key[params.env.name] = params.model_dump(mode="json")[params.env.name]
    return key


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(folder: Path) -> dict[str, str]:
    return {
        p.name: sha256(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != PIN_FILE
    }


def read_pin(pin_dir: str | Path) -> dict | None:
    """The pin's record, or None when the directory holds no pin."""
    path = Path(pin_dir) / PIN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise StudentDirError(
            f"{path} is not valid JSON ({err}): restore it with `git checkout {path}`"
        ) from None


def key_differences(pinned: dict, current: dict, prefix: str = "") -> list[str]:
    """The dotted names of the params whose values differ between two build keys."""
    out = []
    for name in sorted(set(pinned) | set(current)):
        a, b = pinned.get(name), current.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            out += key_differences(a, b, f"{prefix}{name}.")
        elif a != b:
            out.append(f"{prefix}{name}")
    return out


def verify(pin_dir: str | Path) -> dict:
    """The pin's record after checking every listed file against its SHA-256 (and that nothing is
    missing); a StudentDirError names the first file that differs."""
    pin_dir = Path(pin_dir)
    pin = read_pin(pin_dir)
    if pin is None:
        raise StudentDirError(f"{pin_dir / PIN_FILE} is missing: {pin_dir} is not a pinned student")
    for name, expected in pin["files"].items():
        path = pin_dir / name
        if not path.is_file():
            raise StudentDirError(
                f"{path} is missing from the pinned student: restore it with `git checkout {path}`"
            )
        if sha256(path) != expected:
            raise StudentDirError(
                f"{path} does not match its pin (SHA-256 differs): restore it with "
                f"`git checkout {path}`, or rebuild with `-S student.rebuild=true`"
            )
    return pin


def restore(pin_dir: str | Path, out_dir: str | Path) -> dict:
    """Copy a verified pin's model files to `out_dir` (the stage's output); returns the pin's
    record."""
    pin = verify(pin_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in pin["files"]:
        shutil.copyfile(Path(pin_dir) / name, out / name)
    check_model_dir(out)
    return pin


def write_pin(model_dir: str | Path, pin_dir: str | Path, key: dict) -> dict:
    """Pin a built student: its files copied into `pin_dir` with `pin.json` (build key, hashes,
    where it was built). The directory is then committed to git."""
    model_dir, pin_dir = Path(model_dir), Path(pin_dir)
    check_model_dir(model_dir)
    if pin_dir.exists():
        shutil.rmtree(pin_dir)
    pin_dir.mkdir(parents=True)
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and path.name != PIN_FILE:
            shutil.copyfile(path, pin_dir / path.name)
    import torch
    import transformers

    pin = {
        "build_key": key,
        "files": file_hashes(pin_dir),
        "built_with": {
            "machine": platform.machine(),
            "processor": processor_name(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
    }
    (pin_dir / PIN_FILE).write_text(json.dumps(pin, indent=2, sort_keys=True) + "\n")
    return pin


def processor_name() -> str:
    """The CPU's model name (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
