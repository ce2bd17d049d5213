"""Fixtures shared across test folders: where the repository and the sample project are, a
writable copy of the sample to break, and JSON snapshots."""

from __future__ import annotations

import difflib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "village"
SNAPSHOTS = REPO / "tests" / "capabilities" / "snapshots"

SnapshotCheck = Callable[[str, Any], None]

# tests/ is a package (tests/__init__.py), so pytest puts the repository root on sys.path,
# never tests/ itself: tests/capabilities cannot shadow the capabilities package.


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def sample() -> Path:
    return SAMPLE


@pytest.fixture
def village(tmp_path: Path) -> Path:
    """A private copy of samples/village, for tests that break one file."""
    target = tmp_path / "village"
    shutil.copytree(SAMPLE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture
def snapshot() -> SnapshotCheck:
    """Compare a JSON value with tests/capabilities/snapshots/NAME.json.

    Fails with a unified diff when the output changed; ``UPDATE_SNAPSHOTS=1`` rewrites the file
    instead (review the git diff before committing it).
    """

    def check(name: str, value: Any) -> None:
        path = SNAPSHOTS / f"{name}.json"
        actual = json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
        if os.environ.get("UPDATE_SNAPSHOTS") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual, encoding="utf-8")
            return
        if not path.exists():
            pytest.fail(f"snapshot {path} is missing; run with UPDATE_SNAPSHOTS=1 to create it")
        expected = path.read_text(encoding="utf-8")
        if actual != expected:
            diff = "".join(
                difflib.unified_diff(
                    expected.splitlines(keepends=True),
                    actual.splitlines(keepends=True),
                    fromfile=f"{path.name} (snapshot)",
                    tofile=f"{path.name} (now)",
                )
            )
            pytest.fail(
                f"output differs from snapshot {path.name} "
                f"(UPDATE_SNAPSHOTS=1 rewrites it):\n{diff}"
            )

    return check
