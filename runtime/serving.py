"""Serving an ASGI app with uvicorn on a socket bound here, for the character endpoint and the
offline model alike.

The socket is bound before uvicorn starts, so port 0 works and the caller learns the real port
before the first request (tests, ``--port 0``). uvicorn keeps the process's logging set-up
(npc's format), not its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import uvicorn

__all__ = ["bind_socket", "running_app", "serve_app"]


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _server(
    app: Any,
    host: str,
    port: int,
    log_level: str,
    lifespan: Literal["on", "off"],
    graceful_shutdown_s: int | None,
    date_header: bool,
) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan=lifespan,
        log_level=log_level,
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=date_header,
        timeout_graceful_shutdown=graceful_shutdown_s,
    )
    return uvicorn.Server(config)


async def serve_app(
    app: Any,
    host: str,
    port: int,
    *,
    log_level: str = "info",
    lifespan: Literal["on", "off"] = "off",
    graceful_shutdown_s: int | None = None,
    date_header: bool = True,
    on_ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve ``app`` until cancelled (or SIGINT/SIGTERM). ``on_ready(host, port)`` once bound
    (the real port when ``port`` is 0)."""
    sock = bind_socket(host, port)
    bound = int(sock.getsockname()[1])
    server = _server(app, host, bound, log_level, lifespan, graceful_shutdown_s, date_header)
    if on_ready is not None:
        on_ready(host, bound)
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def running_app(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    log_level: str = "warning",
    lifespan: Literal["on", "off"] = "off",
    date_header: bool = True,
) -> AsyncIterator[str]:
    """Serve ``app`` in this event loop for the block; yields ``http://HOST:PORT``."""
    sock = bind_socket(host, port)
    bound = int(sock.getsockname()[1])
    server = _server(app, host, bound, log_level, lifespan, None, date_header)
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
