"""Serving the endpoint with uvicorn (``npc serve``), and a loopback server for tests.

The socket is bound here, not by uvicorn, so port 0 works and the caller learns the real port
before the first request.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable

import uvicorn
from starlette.types import ASGIApp

__all__ = ["running_http", "serve_http"]

_GRACEFUL_SHUTDOWN_S = 5


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _server(app: ASGIApp, host: str, port: int, log_level: str) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        log_level=log_level,
        log_config=None,  # keep the process's logging set-up (npc's format), not uvicorn's
        access_log=False,
        server_header=False,
        # Open streams would otherwise hold a shutdown for as long as their turns last.
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
    )
    return uvicorn.Server(config)


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
    sock = _bind(host, port)
    bound = int(sock.getsockname()[1])
    server = _server(app, host, bound, log_level)
    if on_ready is not None:
        on_ready(host, bound)
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def running_http(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning"
) -> AsyncIterator[str]:
    """Serve ``app`` in this event loop for the block; yields its base URL
    (``http://127.0.0.1:PORT``; the OpenAI base URL is that plus ``/v1``)."""
    sock = _bind(host, port)
    bound = int(sock.getsockname()[1])
    server = _server(app, host, bound, log_level)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the HTTP server stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        await task
        sock.close()
