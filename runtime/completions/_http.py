"""A lean HTTP/1.1 client for one endpoint: the completions client's hot path.

Why not httpx2 here: under 200 NPCs thinking at once the turn loop is CPU-bound in one process,
and a general HTTP stack (request/response objects, URL and header models, an h11 state machine
fed through anyio streams, a pool with locks and per-request scans) costs more CPU per request
than everything else a turn does. This module does only what one POST to one URL needs:

- a keep-alive pool of connections to one ``(scheme, host, port)``, at most ``max_idle`` kept;
  the callers (the client's concurrency semaphore) bound how many are in use at once;
- the request head is built once per client; a request is one ``transport.write``;
- the response is parsed in ``data_received`` (an :class:`asyncio.Protocol`, no streams): the
  head (bounded, 1xx skipped), then a chunked, ``content-length`` or close-delimited body whose
  bytes are queued for the reader, which is woken once per network read, not once per chunk;
- TLS with ``ssl.create_default_context()`` for https;
- connect, read (longest silence while waiting) and write timeouts; the read timeout is one
  timer per request, re-armed lazily, not one per read;
- a connection goes back to the pool only after a complete body with keep-alive; after an
  error, a cancellation, extra bytes, or an early close it is closed;
- a reused connection that the server closed before answering (the keep-alive race) is
  retried once on a fresh connection, since the server cannot have seen the request.

Errors are this client's own (:class:`HTTPTransportError` subclasses, in :mod:`._http_conn`
with the connection and its parser); the completions client maps them to its exception tree
at its single mapping boundary (:mod:`._transport`), next to httpx2's.
Not supported (the client falls back to httpx2 for them): proxies, userinfo in the URL.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ._http_conn import (
    DONE,
    HEAD,
    IDLE,
    MAX_HEAD,
    ConnectFailed,
    Connection,
    ConnectTimedOut,
    DecodeFailed,
    Disconnected,
    HTTPTransportError,
    ReadTimedOut,
    RemoteProtocolError,
    WriteTimedOut,
)

__all__ = [
    "MAX_HEAD",
    "ConnectFailed",
    "ConnectTimedOut",
    "DecodeFailed",
    "Disconnected",
    "HTTPPool",
    "HTTPResponse",
    "HTTPTransportError",
    "ReadTimedOut",
    "RemoteProtocolError",
    "WriteTimedOut",
]

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class HTTPResponse:
    """A response whose head has arrived; the body is read with :meth:`next_chunk`."""

    __slots__ = ("_conn", "_decoder", "_pool", "headers", "status")

    def __init__(self, pool: HTTPPool, conn: Connection) -> None:
        self._pool = pool
        self._conn: Connection | None = conn
        self.status = conn.status
        self.headers = conn.headers
        self._decoder: Any = None
        encoding = conn.headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = _Deflate()
        elif encoding not in ("", "identity"):
            self._conn = None
            conn.close()
            raise DecodeFailed(f"unsupported content-encoding {encoding!r}")

    async def next_chunk(self) -> bytes:
        """The body bytes received since the last call (all of them, joined); ``b""`` at the
        end of the body, after which the connection is back in the pool."""
        conn = self._conn
        if conn is None:
            return b""
        while True:
            data = conn.take()
            if data:
                if self._decoder is None:
                    return data
                data = self._decode(data)
                if data:
                    return data
                continue
            if conn.state == DONE:
                tail = self._flush()
                self._done()
                return tail
            await conn.wait()

    def _decode(self, data: bytes) -> bytes:
        try:
            out: bytes = self._decoder.decompress(data)
        except zlib.error as exc:
            raise DecodeFailed(f"cannot decode the body: {exc}") from None
        return out

    def _flush(self) -> bytes:
        decoder = self._decoder
        if decoder is None:
            return b""
        try:
            tail: bytes = decoder.flush()
        except zlib.error as exc:
            raise DecodeFailed(f"cannot decode the body: {exc}") from None
        return tail

    def at_end(self) -> bool:
        conn = self._conn
        return conn is None or conn.state == DONE

    async def read_all(self, limit: int | None = None) -> bytes:
        """The rest of the body (at most ``limit`` bytes; reading stops there)."""
        parts: list[bytes] = []
        size = 0
        while True:
            data = await self.next_chunk()
            if not data:
                if self._conn is None:
                    break
                continue
            parts.append(data)
            size += len(data)
            if limit is not None and size >= limit:
                break
        return b"".join(parts)

    def _done(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool._release(conn)

    async def aclose(self) -> None:
        """Release the connection: to the pool if its body was read to the end, else closed."""
        self._done()


class _Deflate:
    """``content-encoding: deflate`` is zlib-wrapped per the RFC, raw deflate in practice."""

    def __init__(self) -> None:
        self._obj: Any = None
        self._first = b""

    def decompress(self, data: bytes) -> bytes:
        if self._obj is None:
            data = self._first + data
            if len(data) < 2:
                self._first = data
                return b""
            zlib_header = (data[0] & 0x0F) == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._obj = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        out: bytes = self._obj.decompress(data)
        return out

    def flush(self) -> bytes:
        if self._obj is None:
            return b""
        out: bytes = self._obj.flush()
        return out


class HTTPPool:
    """Keep-alive connections to the host of ``url``; ``request`` POSTs to its path."""

    def __init__(
        self,
        url: str,
        *,
        max_idle: int = 64,
        connect_timeout: float | None = 10.0,
        read_timeout: float | None = 60.0,
        write_timeout: float | None = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("userinfo in the URL is not supported by the native HTTP client")
        self.scheme = scheme
        self.host = parts.hostname
        default_port = 443 if scheme == "https" else 80
        self.port = parts.port or default_port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = host if self.port == default_port else f"{host}:{self.port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.target = target
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self._ssl: ssl.SSLContext | None = None
        if scheme == "https":
            self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._idle: list[Connection] = []
        self._closed = False
        self.opened = 0
        """Connections opened so far (tests and benchmarks read it)."""

    def head(self, headers: Mapping[str, str]) -> bytes:
        """The request head up to (not including) ``Content-Length``; built once per client."""
        lines = [f"POST {self.target} HTTP/1.1", f"Host: {self.authority}"]
        for name, value in headers.items():
            if _TOKEN.fullmatch(name) is None:
                raise ValueError(f"invalid header name {name!r}")
            if "\r" in value or "\n" in value or "\x00" in value:
                raise ValueError(f"invalid value for header {name!r}")
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n").encode("latin-1")

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def request(self, head: bytes, content: bytes) -> HTTPResponse:
        """Send one request, return once the response head is in."""
        data = b"%sContent-Length: %d\r\n\r\n%s" % (head, len(content), content)
        while True:
            conn = await self._acquire()
            try:
                conn.begin(data, self.read_timeout)
                if conn.write_paused:
                    await conn.drained(self.write_timeout)
                while conn.state == HEAD:
                    await conn.wait(head=True)
            except Disconnected:
                conn.close()
                if conn.reused and not conn.got_bytes:
                    continue  # the keep-alive race: the server never saw this request
                raise
            except BaseException:
                conn.close()
                raise
            return HTTPResponse(self, conn)

    async def _acquire(self) -> Connection:
        if self._closed:
            raise ConnectFailed("the HTTP client is closed")
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                return conn
            conn.close()
        return await self._connect()

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: Connection(loop),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl is not None else None,
                )
        except TimeoutError:
            raise ConnectTimedOut(
                f"no connection to {self.authority} in {self.connect_timeout:g} s"
            ) from None
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConnectFailed(f"{self.authority}: {exc}") from None
        self.opened += 1
        return conn

    def _release(self, conn: Connection) -> None:
        conn.finish()
        if conn.reusable() and not self._closed and len(self._idle) < self.max_idle:
            conn.state = IDLE
            self._idle.append(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
