"""The live viewer's HTTP server: a tiny HTTP/1.1 server on asyncio streams, loopback only.

It serves the page, ``/info`` and ``GET /feed`` as Server-Sent Events (replay from
``Last-Event-ID`` or ``?after=``, then live, with heartbeats). Why hand-written: no dependency,
no thread, no file outside ``sim/live/``. The ``Host`` header must name loopback (DNS
rebinding) and the page may load nothing from elsewhere (CSP); bad requests get 400/403/404/405/431.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sim._live_feed import LiveFeed

PAGE = Path(__file__).with_name("live") / "index.html"
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]"})
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
)


class LiveServer:
    """``async with LiveServer(feed, port=0) as server:`` serves ``server.url`` on loopback."""

    def __init__(
        self,
        feed: LiveFeed,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        mode: str = "sim",
        title: str = "npc live",
        heartbeat_s: float = 15.0,
    ) -> None:
        self.feed = feed
        self.host = host
        self.port = port
        self.mode = mode
        self.title = title
        self.heartbeat_s = heartbeat_s
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._page = PAGE.read_bytes()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def start(self) -> None:
        self.feed.bind(asyncio.get_running_loop())
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._clients):
            task.cancel()
        for task in list(self._clients):
            with contextlib.suppress(BaseException):
                await task
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    async def __aenter__(self) -> LiveServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- HTTP -------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > 16_384:
            await _respond(writer, 431, b"request header too large\n")
            return
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await _respond(writer, 400, b"bad request\n")
            return
        method, target = parts[0], parts[1]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        host = _hostname(headers.get("host", ""))
        if host not in _LOOPBACK:
            await _respond(writer, 403, b"the live viewer answers loopback names only\n")
            return
        if method not in ("GET", "HEAD"):
            await _respond(writer, 405, b"method not allowed\n", {"Allow": "GET, HEAD"})
            return
        url = urlsplit(target)
        body_only = method == "GET"
        if url.path in ("/", "/index.html"):
            await _respond(
                writer,
                200,
                self._page,
                {"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": _CSP},
                body=body_only,
            )
        elif url.path == "/feed" and body_only:
            await self._stream(writer, headers, parse_qs(url.query))
        elif url.path == "/info":
            info = {
                "mode": self.mode,
                "title": self.title,
                "records": self.feed.last_id,
                "pages": self.feed.subscribers,
            }
            data = json.dumps(info).encode()
            await _respond(writer, 200, data, {"Content-Type": "application/json"}, body=body_only)
        elif url.path == "/favicon.ico":
            await _respond(writer, 204, b"")
        else:
            await _respond(writer, 404, b"not found\n")

    async def _stream(
        self, writer: asyncio.StreamWriter, headers: Mapping[str, str], query: Mapping[str, Any]
    ) -> None:
        after = _int(headers.get("last-event-id")) or _int((query.get("after") or [None])[0])
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-store\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n"
            b"\r\n"
        )
        hello = {"type": "live", "mode": self.mode, "title": self.title, "after": after or 0}
        writer.write(b"retry: 1000\ndata: " + json.dumps(hello).encode() + b"\n\n")
        sub = self.feed.subscribe(after or 0)
        try:
            while not sub.lagging:
                try:
                    frame = await asyncio.wait_for(sub.queue.get(), self.heartbeat_s)
                except TimeoutError:
                    frame = b": keep-alive\n\n"
                chunk = [frame]
                while not sub.queue.empty() and len(chunk) < 512:
                    chunk.append(sub.queue.get_nowait())
                writer.write(b"".join(chunk))
                async with asyncio.timeout(10):  # a page that stops reading is let go
                    await writer.drain()
        finally:
            self.feed.unsubscribe(sub)


def _hostname(value: str) -> str:
    """The name part of a Host header (``[::1]:8770`` -> ``[::1]``)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0]


def _int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
}


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    data: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    body: bool = True,
) -> None:
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}"]
    fields = {
        "Content-Type": "text/plain; charset=utf-8",
        "Content-Length": str(len(data)),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Connection": "close",
        **(headers or {}),
    }
    head += [f"{k}: {v}" for k, v in fields.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (data if body else b""))
    await writer.drain()
