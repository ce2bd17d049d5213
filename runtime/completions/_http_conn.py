"""One HTTP/1.1 connection of the native client (see :mod:`._http`): an asyncio Protocol that
writes a request and parses the response as bytes arrive, and this client's transport errors.

Why parse in ``data_received``: the reader is woken once per network read with every body
byte that arrived (chunk framing already removed), instead of a stream layer handing data
through awaits; the parser is a few ``find`` calls and slices per read.
"""

from __future__ import annotations

import asyncio
import re

__all__ = [
    "DONE",
    "HEAD",
    "IDLE",
    "MAX_HEAD",
    "ConnectFailed",
    "ConnectTimedOut",
    "Connection",
    "DecodeFailed",
    "Disconnected",
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

# Parser states (IDLE: in the pool; HEAD: waiting for the response head; DONE: body complete).
IDLE, HEAD, _CHUNKED, _LENGTH, _UNTIL_CLOSE, DONE = range(6)


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


class Connection(asyncio.Protocol):
    """One connection; parses the response to the request in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.state = IDLE
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
            self.state = DONE
            self.keep_alive = False
        elif state in (HEAD, _CHUNKED, _LENGTH) and self.error is None:
            where = "mid-body" if state != HEAD else "before a complete response head"
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
            if state == HEAD:
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
            self.state = DONE
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self.state = _CHUNKED
        elif "content-length" in headers:
            raw = headers["content-length"]
            if not raw.isdigit():
                raise RemoteProtocolError(f"bad content-length {raw[:40]!r}")
            self.left = int(raw)
            self.state = _LENGTH if self.left else DONE
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
        self.state = DONE
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
                    self.state = DONE
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
        self.state = HEAD
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
        if self.body or self.state == DONE:
            return
        self._raise_if_failed()
        waiter = self.waiter = self.loop.create_future()
        timeout = self.read_timeout
        if timeout is not None:
            self.wait_started = self.loop.time()
            if self.timer is None:
                self.timer = self.loop.call_at(self.wait_started + timeout, self._on_timer)
        await waiter
        if head and self.state != HEAD:
            return  # the head is complete: a broken body is reported while reading it
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self.error is not None and not self.body:
            raise self.error

    def _on_timer(self) -> None:
        self.timer = None
        timeout = self.read_timeout
        if timeout is None or self.state in (IDLE, DONE):
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
        self.state = IDLE
        if self.transport is not None:
            self.transport.close()

    def reusable(self) -> bool:
        return (
            self.state == DONE
            and self.keep_alive
            and self.error is None
            and not self.closed
            and not self.buf
            and self.transport is not None
            and not self.transport.is_closing()
        )
