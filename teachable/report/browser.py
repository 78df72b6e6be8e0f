"""Open the report page in headless Chromium and read back what its inline check script recorded:
how many images there are and decoded, and any script errors; console errors from Chromium's log are
added.

`check_page(path)` returns {"ok", "images", "decoded", "bad", "errors", "console", "height"} (the
page's height in pixels in a window WINDOW wide); `find_chromium()` is None when no Chromium is
installed (Debian: `apt-get install chromium`; `make test` installs it when missing).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

WINDOW = (1280, 900)  # a laptop screen's CSS pixels: the page's max-width is 1280
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHECK = re.compile(r'<pre id="page-check"[^>]*data-ready="1"[^>]*>(.*?)</pre>', re.S)
# Chromium logs every console message of the page as INFO:CONSOLE; the report's page writes none, so
# any is news
CONSOLE_ERROR = re.compile(r"(Uncaught|:CONSOLE[:(]|Failed to load resource)")


def find_chromium() -> str | None:
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


def check_page(page: str | Path, chromium: str | None = None, timeout: float = 120) -> dict:
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium found (install Debian's `chromium` package)")
    url = Path(page).resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                chromium,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-extensions",
                "--no-first-run",
                "--disable-component-update",
                "--mute-audio",
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    match = CHECK.search(proc.stdout)
    console = [line for line in proc.stderr.splitlines() if CONSOLE_ERROR.search(line)]
    if match is None:
        return {
            "ok": False,
            "images": None,
            "decoded": None,
            "bad": [],
            "console": console,
            "errors": [f"page check never ran (exit {proc.returncode}): {proc.stderr[-500:]}"],
        }
    result = json.loads(html.unescape(match.group(1)))
    result["console"] = console
    result["ok"] = not result["errors"] and not console and result["images"] == result["decoded"]
    return result
