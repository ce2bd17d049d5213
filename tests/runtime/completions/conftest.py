from __future__ import annotations

from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[3] / ".." / "shared" / "vectors"

# Modules whose tests do I/O: each of them runs once per HTTP path of the client (the native
# HTTP/1.1 client and httpx2), chosen through NPC_HTTP_CLIENT so that clients built with the
# default backend and `npc complete` subprocesses follow it too.
_IO_MODULES = {"test_completions_client", "test_completions_vectors", "test_completions_cli"}
HTTP_PATHS = ["native", "httpx2"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "http_path" in metafunc.fixturenames:
        module = metafunc.module.__name__.rpartition(".")[2]
        paths = HTTP_PATHS if module in _IO_MODULES else ["native"]
        metafunc.parametrize("http_path", paths, indirect=True)


@pytest.fixture(autouse=True)
def http_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    path: str = getattr(request, "param", "native")
    monkeypatch.setenv("NPC_HTTP_CLIENT", path)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture
def vectors() -> Path:
    if not VECTORS.is_dir():
        pytest.skip(f"recorded vectors not found at {VECTORS} (../shared/vectors)")
    return VECTORS
