"""Shared helpers for the bridge tests: a server on loopback and a raw protocol client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from bridge import BridgeConfig, BridgeServer, Hello, Session

SUBPROTOCOL = "npc-bridge.v1"


class Recorder:
    """A SessionHandler that remembers what happened."""

    def __init__(self, missing: list[str] | None = None) -> None:
        self.opened: list[Session] = []
        self.closed: list[Session] = []
        self.missing = missing or []
        self.opened_event = asyncio.Event()
        self.closed_event = asyncio.Event()

    def missing_capabilities(self, hello: Hello) -> list[str]:
        declared = set(hello.capabilities or [])
        return [m for m in self.missing if m not in declared]

    async def session_opened(self, session: Session) -> None:
        self.opened.append(session)
        self.opened_event.set()

    async def session_closed(self, session: Session) -> None:
        self.closed.append(session)
        self.closed_event.set()


@asynccontextmanager
async def running(handler: Recorder | None = None, **overrides: Any) -> AsyncIterator[BridgeServer]:
    overrides.setdefault("port", 0)
    async with BridgeServer(BridgeConfig(**overrides), handler or Recorder()) as server:
        yield server


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def hello(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "t": "hello",
        "proto": 1,
        "game": "test",
        "npcs": [{"npc": "guard-1", "character": "guard"}],
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


async def open_raw(
    server: BridgeServer,
    *,
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = None,
    origin: str | None = None,
) -> ClientConnection:
    return await connect(
        server.url,
        subprotocols=[
            Subprotocol(p) for p in ([SUBPROTOCOL] if subprotocols is None else subprotocols)
        ],
        compression=None,
        additional_headers=headers or {},
        origin=origin,  # type: ignore[arg-type]
        max_size=None,
        proxy=None,
    )


async def handshake(
    server: BridgeServer, **hello_fields: Any
) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await open_raw(server)
    await ws.send(pack(hello(**hello_fields)))
    welcome = await recv_map(ws)
    assert welcome["t"] == "welcome", welcome
    return ws, welcome


async def recv_map(ws: ClientConnection, wait_s: float = 3.0) -> dict[str, Any]:
    async with asyncio.timeout(wait_s):
        data = await ws.recv()
    assert isinstance(data, bytes)
    out = msgpack.unpackb(data, raw=False)
    assert isinstance(out, dict)
    return out


async def close_code(ws: ClientConnection, wait_s: float = 5.0) -> int | None:
    """Read (and discard) until the connection closes; the code the server sent."""
    async with asyncio.timeout(wait_s):
        try:
            while True:
                await ws.recv()
        except Exception:
            pass
        await ws.wait_closed()
    rcvd = ws.protocol.close_rcvd
    return rcvd.code if rcvd is not None else None


async def only_session(server: BridgeServer, wait_s: float = 3.0) -> Session:
    async with asyncio.timeout(wait_s):
        while not server.sessions:  # noqa: ASYNC110 - polling state the server owns
            await asyncio.sleep(0.005)
    return next(iter(server.sessions.values()))


async def eventually(predicate: Any, wait_s: float = 5.0) -> None:
    async with asyncio.timeout(wait_s):
        while not predicate():  # noqa: ASYNC110 - polling an arbitrary condition
            await asyncio.sleep(0.01)
