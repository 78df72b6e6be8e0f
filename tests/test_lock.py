"""requirements.lock (what `make setup` installs) and pyproject.toml cannot drift apart: every
dependency pyproject names is pinned in the lock at a version its bounds allow, every pin carries
hashes, and torch is the CPU build. No network: the files are only read."""

import re
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
# The platform the lock is compiled for (`make lock`: CPython 3.11, Linux x86_64).
LOCK_ENV = {
    **default_environment(),
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


def _locked() -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, its hashes), from uv's hashed format: `name==version \\` then
    indented options."""
    pins: dict[str, tuple[Version, list[str]]] = {}
    name = None
    for line in LOCK.read_text().splitlines():
        entry = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if entry:
            name = canonicalize_name(entry.group(1))
            assert name not in pins, f"{name} is pinned twice in {LOCK.name}"
            pins[name] = (Version(entry.group(2)), [])
        elif line.startswith("    --hash=sha256:") and name is not None:
            pins[name][1].append(line.split("sha256:")[1].rstrip(" \\"))
        elif line and not line.startswith((" ", "#", "-")):
            raise AssertionError(
                f"{LOCK.name}: a line that is no pin, hash, option or comment: {line!r}"
            )
    return pins


def _dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(spec) for spec in project["dependencies"]]


def test_lock_pins_every_dependency_within_pyproject_bounds():
    pins = _locked()
    for requirement in _dependencies():
        if requirement.marker is not None and not requirement.marker.evaluate(LOCK_ENV):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, (
            f"pyproject.toml names {requirement.name} but {LOCK.name} does not pin it: "
            "run `make lock`"
        )
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{LOCK.name} pins {name}=={version}, outside pyproject.toml's "
            f"{requirement}: run `make lock`"
        )


def test_every_pin_has_hashes_and_the_project_is_not_locked():
    pins = _locked()
    assert len(pins) > len(_dependencies()), "the lock holds the transitive packages too"
    for name, (version, hashes) in pins.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), (
            f"{name}=={version} has no sha256"
        )
    assert "teachable" not in pins, (
        "the project itself is installed editable from the checkout, not from the lock"
    )


def test_torch_is_the_cpu_build_and_the_lock_names_no_source():
    version = _locked()["torch"][0]
    assert version.local == "cpu", (
        f"the lock's torch is the CPU build (a GPU user sets TORCH=...), not {version}"
    )
    # Its page is the Makefile's TORCH_LINKS, asked for torch alone: pip reads a --find-links page
    # once per package.
    assert not [line for line in LOCK.read_text().splitlines() if line.startswith("-")]
    assert (
        "TORCH_LINKS ?= https://download.pytorch.org/whl/cpu/torch/"
        in (ROOT / "Makefile").read_text()
    )


def test_make_setup_installs_from_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert f"LOCK   ?= {LOCK.name}" in makefile
    assert "--require-hashes --find-links $(TORCH_LINKS) -r $(VENV)/.lock-torch.txt" in makefile
    assert "--no-deps --require-hashes -r $(VENV)/.lock-without-torch.txt" in makefile
    assert re.search(
        r"^\$\(STAMP\): \$\(LOCK\) pyproject.toml \$\(VENV\)/.torch-spec$", makefile, re.M
    )
