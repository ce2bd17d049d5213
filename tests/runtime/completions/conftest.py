from __future__ import annotations

from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[3] / ".." / "shared" / "vectors"


@pytest.fixture
def vectors() -> Path:
    if not VECTORS.is_dir():
        pytest.skip(f"recorded vectors not found at {VECTORS} (../shared/vectors)")
    return VECTORS
