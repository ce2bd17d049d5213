"""Fixtures for the character endpoint: the village project, a Runtime on the offline model,
the app behind httpx2.ASGITransport (keys configured), raw HTTP and openai SDK clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import openai
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from runtime.endpoint import create_app
from runtime.project import Project, load_project
from runtime.runtime import Runtime
from tests.runtime.endpoint._endpoint_support import KEY, KEYS_ENV, SAMPLE, sdk_client


@pytest.fixture(scope="session")
def project() -> Project:
    return load_project(SAMPLE)


@pytest_asyncio.fixture
async def runtime(project: Project) -> AsyncIterator[Runtime]:
    async with Runtime(project) as rt:
        yield rt


@pytest.fixture
def app(project: Project, runtime: Runtime) -> Starlette:
    return create_app(project, runtime, environ=KEYS_ENV)


@pytest_asyncio.fixture
async def http(app: Starlette) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app),
        base_url="http://npc.test",
        headers={"Authorization": f"Bearer {KEY}"},
    ) as client:
        yield client


@pytest_asyncio.fixture
async def sdk(app: Starlette) -> AsyncIterator[openai.AsyncOpenAI]:
    async with sdk_client(app) as client:
        yield client
