"""Recording: an httpx2 transport that passes requests through and writes a cassette.

Wraps any transport (a real endpoint, the offline model's ASGITransport), so it plugs into
the completions client's injected ``httpx2.AsyncClient`` with no change to the client. The
response is streamed through to the client unchanged while a copy is kept; the line is written
when the body ends (or breaks off, or the client closes it early), so a slow stream stays slow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import httpx2

from runtime.cassette.entry import KEPT_HEADERS, Exchange
from runtime.cassette.normalise import normalise_request, request_key

__all__ = ["RecordingTransport"]


class RecordingTransport(httpx2.AsyncBaseTransport):
    """Append one JSONL line per exchange to ``cassette`` (created if missing).

    ``base_path``: the path of the endpoint's base URL (``/v1`` for
    ``https://api.openai.com/v1``), stripped from recorded paths so the cassette replays at
    any base URL.
    """

    def __init__(
        self, inner: httpx2.AsyncBaseTransport, cassette: str | Path, *, base_path: str = ""
    ) -> None:
        self.inner = inner
        self.path = Path(cassette)
        self.base_path = base_path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")
        self.recorded = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        normalised = normalise_request(
            request.method, request.url.path, request.url.query.decode(), body, self.base_path
        )
        key = request_key(normalised)
        try:
            response = await self.inner.handle_async_request(request)
        except httpx2.TransportError as exc:
            self._write(Exchange(key, normalised, None, (), b"", _describe(exc)))
            raise
        headers = tuple(
            (k.lower(), v) for k, v in response.headers.multi_items() if k.lower() in KEPT_HEADERS
        )
        tee = _Tee(self, key, normalised, response.status_code, headers, response.stream)
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=tee,
            request=request,
            extensions=response.extensions,
        )

    def _write(self, exchange: Exchange) -> None:
        if self._file is None:
            return
        # One write per line, flushed: a crash loses at most the exchange in flight.
        self._file.write(exchange.to_line())
        self._file.flush()
        self.recorded += 1

    async def aclose(self) -> None:
        await self.inner.aclose()
        if self._file is not None:
            self._file.close()
            self._file = None


class _Tee(httpx2.AsyncByteStream):
    def __init__(
        self,
        owner: RecordingTransport,
        key: str,
        request: dict[str, object],
        status: int,
        headers: tuple[tuple[str, str], ...],
        inner: httpx2.AsyncByteStream | httpx2.SyncByteStream,
    ) -> None:
        self.owner = owner
        self.key = key
        self.request = request
        self.status = status
        self.headers = headers
        self.inner = inner
        self.parts: list[bytes] = []
        self.done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            if isinstance(self.inner, httpx2.AsyncByteStream):
                async for chunk in self.inner:
                    self.parts.append(chunk)
                    yield chunk
            else:
                for chunk in self.inner:
                    self.parts.append(chunk)
                    yield chunk
        except httpx2.TransportError as exc:
            self._finish(_describe(exc), partial=False)
            raise
        self._finish(None, partial=False)

    def _finish(self, error: str | None, *, partial: bool) -> None:
        if self.done:
            return
        self.done = True
        body = b"".join(self.parts)
        exchange = Exchange(
            self.key, dict(self.request), self.status, self.headers, body, error, partial
        )
        self.owner._write(exchange)

    async def aclose(self) -> None:
        # Closed before the end: the client gave up reading; keep what it saw.
        self._finish(None, partial=True)
        if isinstance(self.inner, httpx2.AsyncByteStream):
            await self.inner.aclose()


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"
