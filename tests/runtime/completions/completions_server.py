"""A scripted loopback HTTP/1.1 server for the completions tests (real sockets, port 0).

It counts and records requests, and answers each with the next :class:`Reply` of its script:
status, headers, body chunks sent as separate writes (chunked encoding, so each chunk is a
separate read for the client), optional pauses, a cut connection, or a stall.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Reply:
    status: int = 200
    chunks: list[bytes] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "text/event-stream"})
    delay_before: float = 0.0  # before the status line
    delay_between: float = 0.0
    cut: bool = False  # close the socket after the chunks, without the final 0-chunk
    stall: bool = False  # after the chunks, keep the connection open and silent


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer:
    def __init__(self, script: list[Reply] | Callable[[Request], Reply]) -> None:
        self.script = script
        self.requests: list[Request] = []
        self.closed_connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.connection_closed = asyncio.Event()
        self.request_seen = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await self._server.wait_closed()

    def _next_reply(self, request: Request) -> Reply:
        if callable(self.script):
            return self.script(request)
        index = min(len(self.requests) - 1, len(self.script) - 1)
        return self.script[index]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A cancelled client-connected task makes asyncio 3.11 log a bogus error: end quietly.
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve_connection(reader, writer)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, path, headers, body)
                self.requests.append(request)
                self.request_seen.set()
                reply = self._next_reply(request)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    if not await self._answer(reply, writer, reader):
                        return
                finally:
                    self.in_flight -= 1
        finally:
            self.closed_connections += 1
            self.connection_closed.set()
            writer.close()
            self._tasks.discard(task)

    async def _answer(
        self, reply: Reply, writer: asyncio.StreamWriter, reader: asyncio.StreamReader
    ) -> bool:
        if reply.delay_before:
            await asyncio.sleep(reply.delay_before)
        head = [f"HTTP/1.1 {reply.status} X"]
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        head.append("transfer-encoding: chunked")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        for i, chunk in enumerate(reply.chunks):
            if i and reply.delay_between:
                await asyncio.sleep(reply.delay_between)
            if chunk:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
        if reply.cut:
            await writer.drain()
            return False
        if reply.stall:
            await writer.drain()
            await reader.read()  # until the client goes away
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


def sse_events(raw: bytes) -> list[bytes]:
    """Split an SSE body into its events (each with its blank line), to send one per write."""
    parts = raw.replace(b"\r\n", b"\n").split(b"\n\n")
    return [p + b"\n\n" for p in parts if p.strip()]
