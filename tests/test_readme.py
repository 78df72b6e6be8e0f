"""The README stays a newcomer's page: at most 15,000 bytes, no dates and no commit hashes
(measurements, with their dates and commits, belong in docs/RESULTS.md)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
MAX_BYTES = 15_000
DATE = re.compile(r"\b(19|20)\d\d-(0[1-9]|1[0-2])-([0-2]\d|3[01])\b")
HASH = re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")


def test_readme_size():
    assert README.stat().st_size <= MAX_BYTES, (
        f"README.md is {README.stat().st_size} bytes (> {MAX_BYTES})"
    )


def test_readme_has_no_dates_or_commit_hashes():
    text = README.read_text(encoding="utf-8")
    assert not DATE.search(text), f"a date in README.md: {DATE.search(text).group(0)}"
    assert not HASH.search(text), f"a commit hash in README.md: {HASH.search(text).group(0)}"


def test_the_checks_catch_what_they_name():
    assert DATE.search("the pilot of 2026-12-07") and HASH.search("see commit 187e608")
    assert not HASH.search("sha256 deadbeef") and not DATE.search("n = 2026")
