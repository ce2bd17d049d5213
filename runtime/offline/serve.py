"""Exposing the offline model on a TCP port (uvicorn), for tools outside this process.

The socket is bound here, not by uvicorn, so port 0 works and the caller learns the real port
before the first request (tests, `npc offline-model --port 0`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable

import uvicorn

from runtime.offline.app import OfflineModel

__all__ = ["bind_socket", "running_offline_model", "serve_offline_model"]


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _server(app: OfflineModel, host: str, port: int, log_level: str) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_level=log_level,
        access_log=False,
        server_header=False,
        date_header=False,
    )
    return uvicorn.Server(config)


async def serve_offline_model(
    app: OfflineModel,
    host: str = "127.0.0.1",
    port: int = 8090,
    *,
    log_level: str = "warning",
    on_ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve ``app`` until cancelled (or SIGINT/SIGTERM). ``on_ready(host, port)`` once bound."""
    sock = bind_socket(host, port)
    bound = sock.getsockname()[1]
    server = _server(app, host, bound, log_level)
    if on_ready is not None:
        on_ready(host, bound)
    await server.serve(sockets=[sock])


@contextlib.asynccontextmanager
async def running_offline_model(
    app: OfflineModel, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve ``app`` in this event loop for the block; yields its base URL (``.../v1``)."""
    sock = bind_socket(host, port)
    bound = sock.getsockname()[1]
    server = _server(app, host, bound, "warning")
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://{host}:{bound}/v1"
    finally:
        server.should_exit = True
        await task
