"""The transport boundary of the completions client: which HTTP path a client uses, the
interface a stream reads a response through on either path, and the one place where either
path's transport errors become :mod:`runtime.completions.errors` exceptions.

Why two paths: the native HTTP/1.1 client (:mod:`._http`) is several times cheaper per request
(the turn loop is CPU-bound with hundreds of NPCs), but an injected ``httpx2.AsyncClient`` is
how tests (``MockTransport``), the offline model (``ASGITransport``) and the record/replay
cassettes plug in, and httpx2 speaks to proxies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol

import httpx2

from . import _http
from ._policy import Timeouts
from .errors import CompletionsError, ConnectError, StreamProtocolError, StreamTruncated
from .errors import TimeoutError as CompletionsTimeout

__all__ = ["TRANSPORT_ERRORS", "Backend", "Httpx2Response", "Response", "choose_backend",
           "map_transport_error"]  # fmt: skip

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy")
Backend = Literal["auto", "native", "httpx2"]


def choose_backend(backend: str, url: str, environ: Mapping[str, str]) -> str:
    """``auto``: the native client, unless ``NPC_HTTP_CLIENT=httpx2`` or a proxy variable is
    set (the native client does not speak to proxies; httpx2 honours them and ``NO_PROXY``)."""
    if backend not in ("auto", "native", "httpx2"):
        raise ValueError(f"backend must be 'auto', 'native' or 'httpx2', got {backend!r}")
    if backend != "auto":
        return backend
    forced = environ.get("NPC_HTTP_CLIENT", "").strip().lower()
    if forced in ("native", "httpx2"):
        return forced
    scheme = url.partition("://")[0].lower()
    wanted = ("all_proxy", f"{scheme}_proxy")
    for name, value in environ.items():
        if value.strip() and name.lower() in _PROXY_VARS and name.lower() in wanted:
            return "httpx2"
    if "@" in url.partition("://")[2].partition("/")[0]:
        return "httpx2"  # userinfo in the URL: httpx2 turns it into basic auth
    return "native"


TRANSPORT_ERRORS = (httpx2.HTTPError, _http.HTTPTransportError)


def map_transport_error(exc: Exception, timeouts: Timeouts, in_body: bool) -> Exception:
    """The one place where either HTTP path's errors become ours."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx2.ConnectTimeout | _http.ConnectTimedOut):
        return CompletionsTimeout("connect", timeouts.connect)
    if isinstance(exc, httpx2.ReadTimeout | _http.ReadTimedOut):
        return CompletionsTimeout("read", timeouts.read)
    if isinstance(exc, httpx2.WriteTimeout | _http.WriteTimedOut):
        return CompletionsTimeout("write", timeouts.write)
    if isinstance(exc, httpx2.PoolTimeout):
        return CompletionsTimeout("pool", timeouts.pool)
    if isinstance(exc, httpx2.ConnectError | _http.ConnectFailed):
        return ConnectError(f"cannot connect: {text}")
    if isinstance(exc, httpx2.DecodingError | _http.DecodeFailed):
        return StreamProtocolError(f"cannot decode the response body: {text}")
    if isinstance(exc, httpx2.TransportError | _http.HTTPTransportError):
        if in_body:
            return StreamTruncated(f"connection lost mid-response: {text}")
        return ConnectError(f"no response: {text}")
    return CompletionsError(f"HTTP client error: {text}")


class Response(Protocol):
    """What a stream needs from either HTTP path (``next_chunk`` returns ``b""`` at the end)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def next_chunk(self) -> bytes: ...

    async def read_all(self, limit: int | None = None) -> bytes: ...

    def at_end(self) -> bool:
        """True when the whole body has arrived (reading on would not wait)."""
        ...

    async def aclose(self) -> None: ...


class Httpx2Response:
    """An ``httpx2.Response`` behind :class:`Response`."""

    __slots__ = ("_chunks", "_response", "headers", "status")

    def __init__(self, response: httpx2.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        # Skip httpx2's decoder layer (one async generator per read) unless it is needed.
        plain = encoding in ("", "identity") and not response.is_stream_consumed
        self._chunks = response.aiter_raw() if plain else response.aiter_bytes()

    async def next_chunk(self) -> bytes:
        async for chunk in self._chunks:
            if chunk:
                return chunk
        return b""

    async def read_all(self, limit: int | None = None) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in self._chunks:
            parts.append(chunk)
            size += len(chunk)
            if limit is not None and size >= limit:
                break
        return b"".join(parts)

    def at_end(self) -> bool:
        return False  # httpx2 does not say; the caller reads on (under a deadline)

    async def aclose(self) -> None:
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        await self._response.aclose()
