"""Fixtures for the web tests: node with samples/web's npm packages, and headless Chromium.

What is needed comes from package managers (npm ci from the committed lockfile, Debian's
chromium, PyPI's playwright driver); a test skips, naming what is missing, only when one of
them is not there. No browser is ever downloaded: playwright drives /usr/bin/chromium.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "samples" / "web"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("NPC_CHROMIUM"), "/usr/bin/chromium", "chromium"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture(scope="session")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.skip("node is not installed (apt-get install nodejs)")
    return path


@pytest.fixture(scope="session")
def web_modules(node: str) -> Path:
    """samples/web/node_modules, installed with `npm ci` from the lockfile when missing."""
    modules = WEB / "node_modules"
    if (modules / "@msgpack" / "msgpack").is_dir() and (modules / "ws").is_dir():
        return Path(modules)
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: cannot install samples/web's packages")
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=WEB,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("npm ci in samples/web did not finish in 300 s")
    if done.returncode != 0:
        pytest.skip(f"npm ci in samples/web failed: {done.stderr.strip()[-500:]}")
    return modules


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Debian Chromium driven by playwright (never a downloaded browser).

    Module-scoped: playwright's sync API keeps an event loop running in this thread while
    it is open, and pytest-asyncio tests elsewhere cannot start theirs until it is closed."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("python package playwright is not installed (pip install playwright)")
    path = chromium_path()
    if path is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()
