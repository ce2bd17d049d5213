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

Errors are this module's own (:class:`HTTPTransportError` subclasses); the completions client
maps them to its exception tree at its single mapping boundary, next to httpx2's.
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

__all__ = [
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

MAX_HEAD = 64 * 1024
"""Largest response head accepted (status line + headers)."""
_MAX_CHUNK_LINE = 4096
_READ_HIGH_WATER = 1 << 20  # pause reading when this much body is queued and unread
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

# Parser states.
_IDLE, _HEAD, _CHUNKED, _LENGTH, _UNTIL_CLOSE, _DONE = range(6)


class HTTPTransportError(Exception):
    """Base of this module's errors."""


class ConnectFailed(HTTPTransportError):
    pass


class ConnectTimedOut(HTTPTransportError):
    pass


class ReadTimedOut(HTTPTransportError):
    pass


class WriteTimedOut(HTTPTransportError):
    pass


class RemoteProtocolError(HTTPTransportError):
    """The server's bytes are not a valid HTTP/1.1 response."""


class Disconnected(HTTPTransportError):
    """The connection closed before the response (or its body) was complete."""


class DecodeFailed(HTTPTransportError):
    """A ``content-encoding`` we cannot (or could not) decode."""


class _Conn(asyncio.Protocol):
    """One connection; parses the response to the request in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.state = _IDLE
        self.got_bytes = False
        self.error: HTTPTransportError | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.buf = b""  # unparsed head / chunk framing bytes
        self.body: list[bytes] = []
        self.queued = 0
        self.paused = False
        self.left = 0  # bytes left in the current chunk or content-length body
        self.need_crlf = False
        self.trailers = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = True
        self.last_data = 0.0
        self.wait_started = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.read_timeout: float | None = None
        self.write_paused = False
        self.drain: asyncio.Future[None] | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        state = self.state
        if state == _UNTIL_CLOSE:
            self.state = _DONE
            self.keep_alive = False
        elif state in (_HEAD, _CHUNKED, _LENGTH) and self.error is None:
            where = "mid-body" if state != _HEAD else "before a complete response head"
            why = f": {exc}" if exc else ""
            self.error = Disconnected(f"server closed the connection {where}{why}")
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)
        self._wake()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self.last_data = self.loop.time()
        state = self.state
        try:
            if state == _HEAD:
                self._feed_head(data)
            elif state == _CHUNKED:
                self._feed_chunked(data)
            elif state == _LENGTH:
                self._feed_length(data)
            elif state == _UNTIL_CLOSE:
                self._queue(data)
            else:  # bytes nobody asked for: this connection cannot be trusted any more
                self.keep_alive = False
                if self.transport is not None:
                    self.transport.close()
                return
        except HTTPTransportError as exc:
            self.error = exc
            self.keep_alive = False
            if self.transport is not None:
                self.transport.close()
        if self.queued > _READ_HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    # -- parsing --------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _queue(self, data: bytes) -> None:
        if data:
            self.body.append(data)
            self.queued += len(data)

    def _feed_head(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise RemoteProtocolError(f"response head larger than {MAX_HEAD} bytes")
                self.buf = buf
                return
            if end > MAX_HEAD:
                raise RemoteProtocolError(f"response head larger than {MAX_HEAD} bytes")
            head, buf = buf[:end], buf[end + 4 :]
            status = self._parse_head(head)
            if 100 <= status < 200:  # 100 Continue, 103 Early Hints: the answer follows
                continue
            break
        self.buf = b""
        self.status = status
        headers = self.headers
        if status in (204, 304):
            self.state = _DONE
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self.state = _CHUNKED
        elif "content-length" in headers:
            raw = headers["content-length"]
            if not raw.isdigit():
                raise RemoteProtocolError(f"bad content-length {raw[:40]!r}")
            self.left = int(raw)
            self.state = _LENGTH if self.left else _DONE
        else:
            self.state = _UNTIL_CLOSE
            self.keep_alive = False
        if buf:
            if self.state == _CHUNKED:
                self._feed_chunked(buf)
            elif self.state == _LENGTH:
                self._feed_length(buf)
            elif self.state == _UNTIL_CLOSE:
                self._queue(buf)
            else:
                self.keep_alive = False  # bytes after a body-less response

    def _parse_head(self, head: bytes) -> int:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise RemoteProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(parts[1])
        if not 100 <= status <= 999:
            raise RemoteProtocolError(f"bad status code {status}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name[-1:] in (b" ", b"\t"):
                raise RemoteProtocolError(f"malformed header line {line[:80]!r}")
            key = name.decode("latin-1").lower()
            text = value.strip().decode("latin-1")
            old = headers.get(key)
            headers[key] = text if old is None else f"{old}, {text}"
        self.headers = headers
        connection = headers.get("connection", "").lower()
        if parts[0] == b"HTTP/1.0":
            self.keep_alive = "keep-alive" in connection
        else:
            self.keep_alive = "close" not in connection
        return status

    def _feed_length(self, data: bytes) -> None:
        left = self.left
        if len(data) < left:
            self._queue(data)
            self.left = left - len(data)
            return
        self._queue(data[:left] if len(data) > left else data)
        self.left = 0
        self.state = _DONE
        if len(data) > left:
            self.keep_alive = False  # more bytes than the body: not a clean connection

    def _feed_chunked(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos, n = 0, len(buf)
        body = self.body
        while pos < n:
            left = self.left
            if left:
                end = pos + left
                if end <= n:
                    body.append(buf[pos:end])
                    self.queued += left
                    self.left = 0
                    self.need_crlf = True
                    pos = end
                    continue
                body.append(buf[pos:] if pos else buf)
                self.queued += n - pos
                self.left = left - (n - pos)
                pos = n
                break
            if self.need_crlf:
                if n - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise RemoteProtocolError("chunk data not followed by CRLF")
                self.need_crlf = False
                pos += 2
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if n - pos > _MAX_CHUNK_LINE:
                    raise RemoteProtocolError("chunk size or trailer line too long")
                break
            if self.trailers:
                if eol == pos:  # the blank line after the trailers: body complete
                    self.state = _DONE
                    pos += 2
                    if pos < n:
                        self.keep_alive = False
                    pos = n
                    break
                pos = eol + 2  # a trailer field: ignored
                continue
            line = buf[pos:eol]
            semi = line.find(b";")  # chunk extensions are ignored
            size_text = (line[:semi] if semi >= 0 else line).strip(b" \t")
            if _HEX.fullmatch(size_text) is None:
                raise RemoteProtocolError(f"bad chunk size line {line[:40]!r}")
            size = int(size_text, 16)
            pos = eol + 2
            if size:
                self.left = size
            else:
                self.trailers = True
        self.buf = buf[pos:] if pos < n else b""

    # -- the request in flight ------------------------------------------------------------

    def begin(self, data: bytes, read_timeout: float | None) -> None:
        self.state = _HEAD
        self.got_bytes = False
        self.error = None
        self.buf = b""
        self.body = []
        self.queued = 0
        self.left = 0
        self.need_crlf = False
        self.trailers = False
        self.status = 0
        self.headers = {}
        self.keep_alive = True
        self.read_timeout = read_timeout
        self.last_data = self.loop.time()
        assert self.transport is not None
        self.transport.write(data)

    async def wait(self, head: bool = False) -> None:
        """Until something arrives, the connection ends, or the read timeout passes. An error
        is raised only once the bytes that arrived before it have been taken."""
        if self.body or self.state == _DONE:
            return
        self._raise_if_failed()
        waiter = self.waiter = self.loop.create_future()
        timeout = self.read_timeout
        if timeout is not None:
            self.wait_started = self.loop.time()
            if self.timer is None:
                self.timer = self.loop.call_at(self.wait_started + timeout, self._on_timer)
        await waiter
        if head and self.state != _HEAD:
            return  # the head is complete: a broken body is reported while reading it
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self.error is not None and not self.body:
            raise self.error

    def _on_timer(self) -> None:
        self.timer = None
        timeout = self.read_timeout
        if timeout is None or self.state in (_IDLE, _DONE):
            return
        waiter = self.waiter
        if waiter is None:
            return  # nobody waiting: re-armed by the next wait
        quiet_since = max(self.last_data, self.wait_started)
        due = quiet_since + timeout
        if self.loop.time() >= due:
            self.error = ReadTimedOut(f"no data for {timeout:g} s")
            self.keep_alive = False
            self._wake()
        else:
            self.timer = self.loop.call_at(due, self._on_timer)

    async def drained(self, limit: float | None) -> None:
        if not self.write_paused or self.closed:
            return
        self.drain = self.loop.create_future()
        try:
            async with asyncio.timeout(limit):
                await self.drain
        except TimeoutError:
            raise WriteTimedOut(f"request not sent in {limit:g} s") from None
        finally:
            self.drain = None

    def take(self) -> bytes:
        body = self.body
        if not body:
            return b""
        self.body = []
        self.queued = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return body[0] if len(body) == 1 else b"".join(body)

    def finish(self) -> None:
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()

    def close(self) -> None:
        self.finish()
        self.closed = True
        self.state = _IDLE
        if self.transport is not None:
            self.transport.close()

    def reusable(self) -> bool:
        return (
            self.state == _DONE
            and self.keep_alive
            and self.error is None
            and not self.closed
            and not self.buf
            and self.transport is not None
            and not self.transport.is_closing()
        )


class HTTPResponse:
    """A response whose head has arrived; the body is read with :meth:`next_chunk`."""

    __slots__ = ("_conn", "_decoder", "_pool", "headers", "status")

    def __init__(self, pool: HTTPPool, conn: _Conn) -> None:
        self._pool = pool
        self._conn: _Conn | None = conn
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
            if conn.state == _DONE:
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
        return conn is None or conn.state == _DONE

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
        self._idle: list[_Conn] = []
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
                while conn.state == _HEAD:
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

    async def _acquire(self) -> _Conn:
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

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Conn(loop),
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

    def _release(self, conn: _Conn) -> None:
        conn.finish()
        if conn.reusable() and not self._closed and len(self._idle) < self.max_idle:
            conn.state = _IDLE
            self._idle.append(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
