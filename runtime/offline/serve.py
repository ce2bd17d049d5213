"""Exposing the offline model on a TCP port (uvicorn), for tools outside this process
(``npc offline-model``, tests)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from runtime.offline.app import OfflineModel
from runtime.serving import bind_socket, running_app, serve_app

__all__ = ["bind_socket", "running_offline_model", "serve_offline_model"]


async def serve_offline_model(
    app: OfflineModel,
    host: str = "127.0.0.1",
    port: int = 8090,
    *,
    log_level: str = "warning",
    on_ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve ``app`` until cancelled (or SIGINT/SIGTERM). ``on_ready(host, port)`` once bound."""
    await serve_app(
        app, host, port, log_level=log_level, lifespan="on", date_header=False, on_ready=on_ready
    )


@contextlib.asynccontextmanager
async def running_offline_model(
    app: OfflineModel, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve ``app`` in this event loop for the block; yields its base URL (``.../v1``)."""
    # No Date header: the offline model's answers stay byte-identical for recordings.
    async with running_app(app, host, port, lifespan="on", date_header=False) as url:
        yield f"{url}/v1"
