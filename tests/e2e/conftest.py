"""Fixtures of the end-to-end tests; the harness itself is in e2e_world.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from runtime.project import Project
from tests.e2e.e2e_world import World, open_world
from tests.runtime.scripted import make_project


@pytest.fixture
def project(tmp_path: Path) -> Project:
    built: Project = make_project(tmp_path / "project")
    return built


@pytest_asyncio.fixture
async def world(project: Project) -> AsyncIterator[World]:
    async with open_world(project) as opened:
        yield opened
