"""Serving the endpoint with uvicorn (``npc serve``), and a loopback server for tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from starlette.types import ASGIApp

from runtime.serving import running_app, serve_app

__all__ = ["running_http", "serve_http"]

# Open streams would otherwise hold a shutdown for as long as their turns last.
_GRACEFUL_SHUTDOWN_S = 5


async def serve_http(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    log_level: str = "info",
    on_ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve ``app`` until cancelled (or SIGINT/SIGTERM). ``on_ready(host, port)`` once bound
    (the real port when ``port`` is 0)."""
    await serve_app(
        app,
        host,
        port,
        log_level=log_level,
        graceful_shutdown_s=_GRACEFUL_SHUTDOWN_S,
        on_ready=on_ready,
    )


@contextlib.asynccontextmanager
async def running_http(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning"
) -> AsyncIterator[str]:
    """Serve ``app`` in this event loop for the block; yields its base URL
    (``http://127.0.0.1:PORT``; the OpenAI base URL is that plus ``/v1``)."""
    async with running_app(app, host, port, log_level=log_level) as url:
        yield url
