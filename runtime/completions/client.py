"""The async client for ``POST {base_url}/chat/completions`` on any OpenAI-compatible endpoint.

Why it looks like this:

- The request body is the caller's plain JSON-ready dict (messages already in wire form, tools
  built once by the capability registry). It is shallow-copied to add ``stream``/``model``/
  ``stream_options`` and serialised once; messages are never walked. (The openai SDK's
  per-message parameter transform is what makes it 28x slower than a bare loop at 200 messages.)
- Each network read goes through the SSE decoder and the assembler in one batch, and the events
  it yields are handed out from a list without further awaits, so per-chunk cost stays small.
- Two HTTP paths behind one small response interface (``status``, ``headers``,
  ``next_chunk``, ``read_all``, ``aclose``): the native HTTP/1.1 client of :mod:`._http` (the
  default for http(s) URLs: under hundreds of concurrent NPCs the turn loop is CPU-bound, and a
  general HTTP stack costs more CPU per request than the rest of a turn), and an injected
  ``httpx2.AsyncClient`` (tests' ``MockTransport``, the offline model's ASGI transport, the
  record/replay cassettes, anything custom). httpx2 is also used when a proxy is configured in
  the environment (``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``) or ``NPC_HTTP_CLIENT=httpx2``.
- Transport errors of both paths are mapped to :mod:`runtime.completions.errors` at one
  boundary, :func:`._transport.map_transport_error`, called only from this module.
- Retries happen only while nothing has been handed to the caller: before the first event of a
  stream, or at any point inside :meth:`CompletionsClient.complete`, which hands nothing out
  before the end.
- The whole-request deadline is one timer per request that cancels only our own awaits (a stream
  is consumed across ``yield``\\ s, so an ``asyncio.timeout`` block cannot span it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx2

from . import _http
from ._assembly import StreamAssembler, events_from_completion, new_call_id, parse_completion
from ._policy import RetryPolicy, Timeouts, parse_retry_after
from ._sse import SSEDecoder
from ._transport import (
    TRANSPORT_ERRORS,
    Backend,
    Httpx2Response,
    Response,
    choose_backend,
    map_transport_error,
)
from .errors import CompletionsError, HTTPStatusError, StreamProtocolError, error_for_status
from .errors import TimeoutError as CompletionsTimeout
from .types import Completion, StreamEvent

__all__ = ["DEFAULT_BASE_URL", "CompletionStream", "CompletionsClient", "endpoint_url"]

log = logging.getLogger("runtime.completions")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_MAX_ERROR_BODY = 64 * 1024
_DRAIN_AFTER_DONE_S = 2.0
_T = TypeVar("_T")


def endpoint_url(base_url: str) -> str:
    """``{base_url}/chat/completions``, as every provider's docs write the base URL:
    ``https://api.openai.com/v1``, ``https://api.mindforge.ai/v1``, ``https://mdb.ai`` (Minds
    serves at its root), ``http://localhost:11434/v1`` (Ollama), ``http://host:8000/v1`` (vLLM).
    A URL that already ends in ``/chat/completions`` is used as is."""
    url = base_url.strip().rstrip("/")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest:
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    if url.endswith("/chat/completions"):
        return url
    return url + "/chat/completions"


class CompletionsClient:
    """One endpoint, one shared connection pool, at most ``max_concurrency`` requests in flight.

    Pass ``http`` to share a pool or inject a transport (tests use ``httpx2.MockTransport``);
    it is then used for every request. Without it the client owns its connections (closed by
    :meth:`aclose`): by default the native HTTP/1.1 client (keep-alive pool of up to
    ``max_concurrency`` connections; ``ssl_context`` overrides ``ssl.create_default_context()``
    for https), or an ``httpx2.AsyncClient`` sized to ``max_concurrency`` when ``backend`` is
    ``"httpx2"`` or ``"auto"`` finds a proxy configured (see module docstring).
    ``api_key=None`` sends no ``Authorization`` header (local servers).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        *,
        model: str | None = None,
        http: httpx2.AsyncClient | None = None,
        max_concurrency: int = 64,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        include_usage: bool = True,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        new_id: Callable[[], str] = new_call_id,
        backend: Backend = "auto",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.url = endpoint_url(base_url)
        self.model = model
        self.timeouts = timeouts if timeouts is not None else Timeouts()
        self.retry = retry if retry is not None else RetryPolicy()
        self.include_usage = include_usage
        self.max_concurrency = max_concurrency
        self._key = api_key or None
        self._sleep = sleep
        self._rand = rand
        self._new_id = new_id
        self._semaphore = asyncio.Semaphore(max_concurrency)
        t = self.timeouts
        self._http_timeout = httpx2.Timeout(
            connect=t.connect, read=t.read, write=t.write, pool=t.pool
        )
        common = dict(headers or {})
        if self._key:
            common["Authorization"] = f"Bearer {self._key}"
        common["Content-Type"] = "application/json"
        self._stream_headers = {**common, "Accept": "text/event-stream"}
        self._plain_headers = {**common, "Accept": "application/json"}
        self._owns_http = http is None
        self._pool: _http.HTTPPool | None = None
        self._http: httpx2.AsyncClient | None = http
        self.backend = (
            "httpx2" if http is not None else choose_backend(backend, self.url, os.environ)
        )
        if self.backend == "native":
            self._pool = _http.HTTPPool(
                self.url,
                max_idle=max_concurrency,
                connect_timeout=t.connect,
                read_timeout=t.read,
                write_timeout=t.write,
                ssl_context=ssl_context,
            )
            native = {"User-Agent": "npcagent", "Accept-Encoding": "gzip, deflate"}
            self._stream_head = self._pool.head({**native, **self._stream_headers})
            self._plain_head = self._pool.head({**native, **self._plain_headers})
        elif http is None:
            self._http = httpx2.AsyncClient(
                limits=httpx2.Limits(
                    max_connections=max_concurrency,
                    max_keepalive_connections=max_concurrency,
                ),
                timeout=self._http_timeout,
                verify=ssl_context if ssl_context is not None else True,
            )

    @classmethod
    def from_env(
        cls,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        environ: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> CompletionsClient:
        """As the openai SDK does: an explicit argument wins, else ``OPENAI_BASE_URL`` /
        the key variable (``OPENAI_API_KEY`` unless ``api_key_env`` names another), else
        ``https://api.openai.com/v1`` and no key."""
        env = os.environ if environ is None else environ
        url = base_url or env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        key = api_key if api_key is not None else env.get(api_key_env)
        return cls(url, key, **kwargs)

    def __repr__(self) -> str:
        key = "set" if self._key else "none"
        return (
            f"CompletionsClient(url={self.url!r}, api_key=<{key}>, "
            f"max_concurrency={self.max_concurrency})"
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        elif self._owns_http and self._http is not None:
            await self._http.aclose()

    # -- requests -------------------------------------------------------------------------------

    def encode(self, body: Mapping[str, Any], *, stream: bool = True) -> bytes:
        """The request bytes: ``body`` plus ``stream``, a default ``model`` and (streaming)
        ``stream_options.include_usage``; top-level keys only, messages are not touched."""
        payload = dict(body)
        payload["stream"] = stream
        if self.model is not None and "model" not in payload:
            payload["model"] = self.model
        if stream:
            if self.include_usage and "stream_options" not in payload:
                payload["stream_options"] = {"include_usage": True}
        else:
            payload.pop("stream_options", None)
        try:
            text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"request body is not JSON-serialisable: {exc}") from None
        return text.encode("utf-8")

    def stream(self, body: Mapping[str, Any], *, stream: bool = True) -> CompletionStream:
        """``async with client.stream(body) as s: async for event in s: ...``, then
        ``s.completion``. With ``stream=False`` the request is non-streaming and the same
        events are synthesised from the whole answer."""
        return CompletionStream(self, self.encode(body, stream=stream), stream)

    async def complete(self, body: Mapping[str, Any], *, stream: bool = True) -> Completion:
        """The whole completion; a cut stream is retried within the budget even mid-way,
        since nothing is handed out before the end."""
        async with CompletionStream(self, self.encode(body, stream=stream), stream, True) as s:
            return await s.collect()


class _Deadline:
    """The ``total`` timeout: one timer that cancels the task only while it awaits inside the
    stream, and is converted back into :class:`TimeoutError` there."""

    __slots__ = ("_handle", "cancelling", "fired", "seconds", "task", "when")

    def __init__(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        self.seconds = seconds
        self.when = loop.time() + seconds
        self.fired = False
        self.task: asyncio.Task[Any] | None = None
        self.cancelling = 0
        self._handle = loop.call_at(self.when, self._fire)

    def _fire(self) -> None:
        self.fired = True
        if self.task is not None:
            self.task.cancel()

    def expired(self) -> bool:
        return self.fired

    def remaining(self) -> float:
        return self.when - asyncio.get_running_loop().time()

    def cancel(self) -> None:
        self._handle.cancel()


class CompletionStream:
    """One request's response as an async iterator of :data:`StreamEvent`; use as a context
    manager so the response (and its concurrency slot) is released on every exit path,
    including cancellation."""

    def __init__(
        self, client: CompletionsClient, content: bytes, streaming: bool, buffered: bool = False
    ) -> None:
        self._client = client
        self._content = content
        self._streaming = streaming
        self._buffered = buffered  # complete(): nothing is handed out before the end
        self._pending: list[StreamEvent] = []
        self._i = 0
        self._handed = False
        self._completion: Completion | None = None
        self._response: Response | None = None
        self._decoder = SSEDecoder()
        self._assembler = StreamAssembler(secret=client._key, new_id=client._new_id)
        self._deadline: _Deadline | None = None
        self._acquired = False
        self._attempt = 0
        self._waited = 0.0

    def __repr__(self) -> str:
        state = "done" if self._completion is not None else "open"
        return f"<CompletionStream {self._client.url} {state}>"

    @property
    def completion(self) -> Completion:
        """The assembled completion, once the iteration has ended."""
        if self._completion is None or self._i < len(self._pending):
            raise RuntimeError("the stream has not been read to its end")
        return self._completion

    async def collect(self) -> Completion:
        """Read to the end (events not yet taken are discarded) and return the completion."""
        while self._completion is None:
            await self._pull()
        self._i = len(self._pending)
        return self._completion

    # -- context management ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        total = self._client.timeouts.total
        if total is not None:
            self._deadline = _Deadline(total)
        try:
            await self._guard(self._client._semaphore.acquire())
            self._acquired = True
            await self._open()
        except BaseException:
            await self._release()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._release()

    async def aclose(self) -> None:
        await self._release()

    async def _release(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        await self._close_response()
        if self._acquired:
            self._acquired = False
            self._client._semaphore.release()

    async def _close_response(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            try:
                await response.aclose()
            except Exception:  # pragma: no cover - closing a broken stream
                log.debug("error closing a response", exc_info=True)

    # -- iteration ------------------------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamEvent:
        i = self._i
        pending = self._pending
        if i < len(pending):
            self._i = i + 1
            self._handed = True
            return pending[i]
        while True:
            if self._completion is not None:
                raise StopAsyncIteration
            await self._pull()
            if self._pending:
                self._i = 1
                self._handed = True
                return self._pending[0]

    async def _guard(self, awaitable: Awaitable[_T]) -> _T:
        """Await under the total deadline (cheap: no new timer, see :class:`_Deadline`)."""
        deadline = self._deadline
        if deadline is None:
            return await awaitable
        if deadline.fired:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise CompletionsTimeout("total", deadline.seconds)
        task = asyncio.current_task()
        deadline.task = task
        deadline.cancelling = task.cancelling() if task is not None else 0
        try:
            return await awaitable
        except asyncio.CancelledError:
            if deadline.expired() and task is not None and task.uncancel() <= deadline.cancelling:
                raise CompletionsTimeout("total", deadline.seconds) from None
            raise
        finally:
            deadline.task = None

    async def _pull(self) -> None:
        """One network read (or the end of the body) into ``self._pending``."""
        self._pending = []
        self._i = 0
        response = self._response
        if response is None:
            raise RuntimeError("the stream is not open")
        assembler = self._assembler
        if assembler.done:
            await self._drain()
            return
        try:
            try:
                chunk = await self._guard(response.next_chunk())
            except TRANSPORT_ERRORS as exc:
                raise map_transport_error(exc, self._client.timeouts, True) from None
            if not chunk:
                events = assembler.feed(self._decoder.close(), at_eof=True)
                events += assembler.end()
                self._pending = events
                self._completion = assembler.completion()
                await self._close_response()
                return
            self._pending = assembler.feed(self._decoder.feed(chunk))
        except CompletionsError as exc:
            await self._close_response()
            await self._backoff_or_raise(exc)
            await self._open()

    async def _drain(self) -> None:
        """After ``[DONE]``: read to the end of the body so the connection goes back to the
        pool, but never wait long for a server that keeps the body open."""
        response = self._response
        # Usually the body's end came with `[DONE]`: then there is nothing to wait for.
        if response is not None and not response.at_end():
            try:
                async with asyncio.timeout(_DRAIN_AFTER_DONE_S):
                    while await self._guard(response.next_chunk()):
                        pass
            except (TimeoutError, *TRANSPORT_ERRORS):
                pass
        self._pending = self._assembler.end()
        self._completion = self._assembler.completion()
        await self._close_response()

    # -- attempts -------------------------------------------------------------------------------

    async def _backoff_or_raise(self, exc: CompletionsError) -> None:
        """Sleep before the next attempt, or re-raise ``exc`` when it must not be retried."""
        client = self._client
        policy = client.retry
        if not exc.retryable or self._attempt >= policy.max_retries:
            raise exc
        if self._handed and not self._buffered:
            raise exc
        retry_after = parse_retry_after(exc.headers) if isinstance(exc, HTTPStatusError) else None
        delay = policy.delay(self._attempt, retry_after, client._rand())
        if self._waited + delay > policy.max_wait:
            raise exc
        if self._deadline is not None and delay >= self._deadline.remaining():
            raise exc
        self._attempt += 1
        self._waited += delay
        log.warning(
            "completions request to %s failed (%s: %s); retry %d/%d in %.2f s",
            client.url,
            type(exc).__name__,
            exc,
            self._attempt,
            policy.max_retries,
            delay,
        )
        await self._guard(client._sleep(delay))

    async def _open(self) -> None:
        """Send the request until a usable response is open (retrying within the budget)."""
        while True:
            try:
                await self._send()
                return
            except CompletionsError as exc:
                await self._close_response()
                await self._backoff_or_raise(exc)

    async def _send(self) -> None:
        client = self._client
        self._decoder = SSEDecoder()
        self._assembler = StreamAssembler(secret=client._key, new_id=client._new_id)
        self._pending = []
        self._i = 0
        self._handed = False
        try:
            response = await self._guard(self._request())
        except TRANSPORT_ERRORS as exc:
            raise map_transport_error(exc, client.timeouts, False) from None
        self._response = response
        status = response.status
        if status < 200 or status >= 300:
            body = await self._read_bounded(response)
            raise error_for_status(status, body, response.headers, client._key)
        content_type = response.headers.get("content-type", "")
        if self._streaming and not content_type.startswith("application/json"):
            return
        # A whole JSON answer (asked for, or a server that ignored `stream: true`).
        try:
            data = await self._guard(response.read_all())
        except TRANSPORT_ERRORS as exc:
            raise map_transport_error(exc, client.timeouts, True) from None
        try:
            payload = json.loads(data)
        except ValueError:
            raise StreamProtocolError(f"response is not JSON: {data[:200]!r}") from None
        completion = parse_completion(payload, secret=client._key, new_id=client._new_id)
        self._completion = completion
        self._pending = events_from_completion(completion)
        await self._close_response()

    async def _request(self) -> Response:
        client = self._client
        pool = client._pool
        if pool is not None:
            head = client._stream_head if self._streaming else client._plain_head
            return await pool.request(head, self._content)
        http = client._http
        assert http is not None
        request = http.build_request(
            "POST",
            client.url,
            content=self._content,
            headers=client._stream_headers if self._streaming else client._plain_headers,
            timeout=client._http_timeout,
        )
        return Httpx2Response(await http.send(request, stream=True))

    async def _read_bounded(self, response: Response) -> str:
        chunks: list[bytes] = []
        size = 0
        try:
            while size < _MAX_ERROR_BODY:
                chunk = await self._guard(response.next_chunk())
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except TRANSPORT_ERRORS:
            pass  # the status is the error; a cut error body is still worth showing
        return b"".join(chunks)[:_MAX_ERROR_BODY].decode("utf-8", "replace")
