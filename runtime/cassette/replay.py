"""Replay: an httpx2 transport that answers from a cassette, byte for byte, with no network.

Requests are matched by the key of their normalised form; identical requests sent several
times get their recordings in recorded order (a 429 then the successful retry replays as a 429
then the success). A request with no recording raises `ReplayMismatch` naming the first field
that differs from the closest recording, because "no recording" alone says nothing about which
prompt or tool schema changed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2

from runtime.cassette.entry import Exchange
from runtime.cassette.errors import CassetteFormatError, ReplayExhausted, ReplayMismatch
from runtime.cassette.normalise import (
    describe,
    first_difference,
    normalise_request,
    request_key,
    similarity,
)

__all__ = ["ReplayTransport", "load_cassette"]

_ERRORS: dict[str, type[httpx2.TransportError]] = {
    "ConnectError": httpx2.ConnectError,
    "ConnectTimeout": httpx2.ConnectTimeout,
    "ReadError": httpx2.ReadError,
    "ReadTimeout": httpx2.ReadTimeout,
    "RemoteProtocolError": httpx2.RemoteProtocolError,
    "WriteError": httpx2.WriteError,
    "PoolTimeout": httpx2.PoolTimeout,
}


def load_cassette(path: str | Path) -> list[Exchange]:
    """Every exchange of a cassette, in file order. Raises `CassetteFormatError`."""
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CassetteFormatError(shown, None, f"cannot read cassette: {exc}") from None
    return [
        Exchange.from_line(line, shown, lineno)
        for lineno, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


class ReplayTransport(httpx2.AsyncBaseTransport):
    """Serve the recordings of ``cassette``. ``base_path`` as in `RecordingTransport`."""

    def __init__(self, cassette: str | Path, *, base_path: str = "") -> None:
        self.path = Path(cassette)
        self.base_path = base_path
        self.exchanges = load_cassette(cassette)
        self._queues: dict[str, deque[int]] = {}
        for index, exchange in enumerate(self.exchanges):
            self._queues.setdefault(exchange.key, deque()).append(index)
        self.replayed = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        normalised = normalise_request(
            request.method, request.url.path, request.url.query.decode(), body, self.base_path
        )
        key = request_key(normalised)
        queue = self._queues.get(key)
        if queue is None:
            raise self._mismatch(normalised)
        if not queue:
            total = sum(1 for e in self.exchanges if e.key == key)
            raise ReplayExhausted(
                f"{normalised['method']} {normalised['path']} was recorded {total} time(s) in "
                f"{self.path} and has been replayed that often already"
            )
        exchange = self.exchanges[queue.popleft()]
        self.replayed += 1
        if exchange.status is None:
            raise _error(exchange.error or "ConnectError: recorded failure", request)
        return httpx2.Response(
            exchange.status,
            headers=list(exchange.headers),
            stream=_Body(exchange, request),
            request=request,
        )

    def _mismatch(self, normalised: dict[str, object]) -> ReplayMismatch:
        where = f"{normalised['method']} {normalised['path']}"
        same_route = [
            (i, e)
            for i, e in enumerate(self.exchanges)
            if e.request.get("method") == normalised["method"]
            and e.request.get("path") == normalised["path"]
        ]
        candidates = same_route or list(enumerate(self.exchanges))
        if not candidates:
            return ReplayMismatch(f"no recording for {where}: {self.path} is empty", None, None)
        index, closest = max(
            candidates, key=lambda pair: (similarity(normalised, pair[1].request), -pair[0])
        )
        diff = first_difference(normalised, closest.request)
        field = diff[0] if diff is not None else None
        detail = (
            f"{field}: got {describe(diff[1])}, recorded {describe(diff[2])}"
            if diff is not None
            else "identical request (recorded key differs: the cassette was edited?)"
        )
        lineno = index + 1
        return ReplayMismatch(
            f"no recording matches {where}; first difference from the closest recording "
            f"({self.path}, exchange {lineno}) is at {detail}",
            field,
            index,
        )


class _Body(httpx2.AsyncByteStream):
    def __init__(self, exchange: Exchange, request: httpx2.Request) -> None:
        self.exchange = exchange
        self.request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.exchange.body:
            yield self.exchange.body
        if self.exchange.error is not None:
            raise _error(self.exchange.error, self.request)

    async def aclose(self) -> None:
        return None


def _error(recorded: str, request: httpx2.Request) -> httpx2.TransportError:
    name, _, message = recorded.partition(": ")
    cls = _ERRORS.get(name, httpx2.ReadError)
    return cls(message or recorded, request=request)
