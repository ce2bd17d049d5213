"""The native HTTP/1.1 path's own edges, against raw loopback servers that write exact bytes:
keep-alive reuse and its limits, servers closing connections, response framing (partial
heads, 1xx, chunk extensions and trailers, content-length, close-delimited, gzip), malformed
responses, cancellation, TLS, and when the client falls back to httpx2."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from runtime.completions import (
    CompletionsClient,
    ConnectError,
    RetryPolicy,
    StreamTruncated,
    TextDelta,
    Timeouts,
    _http,
)
from runtime.completions._transport import choose_backend

KEY = "sk-native-0123456789abcdef"


def data(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def sse_body(*pieces: str) -> bytes:
    out = [data({"id": "c", "choices": [{"index": 0, "delta": {"content": p}}]}) for p in pieces]
    out.append(data({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def chunked(*parts: bytes, trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)
    return body + b"0\r\n" + trailer + b"\r\n"


def head(status: int = 200, *lines: str) -> bytes:
    text = f"HTTP/1.1 {status} X\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n"
    return text.encode()


SSE = "content-type: text/event-stream"
CHUNKED = "transfer-encoding: chunked"
OK_BYTES = head(200, SSE, CHUNKED) + chunked(sse_body("Hel", "lo"))

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        raw_head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in raw_head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return raw_head + await reader.readexactly(length)


class RawServer:
    """Calls ``handler(reader, writer, connection_number)`` per connection; counts them."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()
        self.request_seen = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await self.handler(reader, writer, self.connections)
        writer.close()
        self.closed.set()
        self._tasks.discard(task)

    async def next_request(self, reader: asyncio.StreamReader) -> bool:
        request = await read_request(reader)
        if request is None:
            return False
        self.requests.append(request)
        self.request_seen.set()
        return True


def serve_each(server_box: list[RawServer], answer: bytes | Callable[[int], bytes]) -> Handler:
    """Answer every request on every connection with fixed bytes (keep-alive)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await server_box[0].next_request(reader):
            writer.write(answer(len(server_box[0].requests)) if callable(answer) else answer)
            await writer.drain()

    return handler


def native(url: str, **kw: Any) -> CompletionsClient:
    kw.setdefault("retry", RetryPolicy(max_retries=0))
    client = CompletionsClient(url, KEY, model="m", backend="native", **kw)
    assert client.backend == "native"
    return client


async def text(client: CompletionsClient) -> str | None:
    return (await client.complete({"messages": []})).choice.content


def pool(client: CompletionsClient) -> _http.HTTPPool:
    assert client._pool is not None
    return client._pool


# -- keep-alive ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_one_connection_serves_sequential_requests() -> None:
    box: list[RawServer] = []
    async with RawServer(serve_each(box, OK_BYTES)) as server:
        box.append(server)
        client = native(server.url)
        assert [await text(client) for _ in range(5)] == ["Hello"] * 5
        assert (server.connections, pool(client).opened, pool(client).idle) == (1, 1, 1)
        await client.aclose()
    request = server.requests[0]
    assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
    assert f"Authorization: Bearer {KEY}\r\n".encode() in request
    assert b"Content-Length: " in request
    assert json.loads(request.partition(b"\r\n\r\n")[2])["stream"] is True


@pytest.mark.asyncio
async def test_idle_pool_is_bounded_by_max_concurrency() -> None:
    box: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await box[0].next_request(reader):
            await asyncio.sleep(0.02)  # overlap the requests
            writer.write(OK_BYTES)

    async with RawServer(handler) as server:
        box.append(server)
        client = native(server.url, max_concurrency=3)
        for _ in range(3):
            results = await asyncio.gather(*(text(client) for _ in range(6)))
            assert results == ["Hello"] * 6
        assert pool(client).idle <= 3
        assert server.connections == pool(client).opened <= 6
        await client.aclose()


@pytest.mark.asyncio
async def test_server_closing_an_idle_keep_alive_connection() -> None:
    box: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if await box[0].next_request(reader):
            writer.write(OK_BYTES)
            await writer.drain()
        # ...and close: the client's pooled connection is now dead.

    async with RawServer(handler) as server:
        box.append(server)
        client = native(server.url)
        assert await text(client) == "Hello"
        await asyncio.wait_for(server.closed.wait(), 5)
        for _ in range(20):  # let the client's loop see the EOF
            await asyncio.sleep(0)
        assert await text(client) == "Hello"
        await client.aclose()
    assert server.connections == 2
    assert len(server.requests) == 2


@pytest.mark.asyncio
async def test_keep_alive_race_is_retried_once_on_a_fresh_connection() -> None:
    """A reused connection closed by the server before any response byte: the request goes
    again on a new connection, outside the retry budget (which is 0 here)."""
    box: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if not await box[0].next_request(reader):
            return
        writer.write(OK_BYTES)
        await writer.drain()
        if n == 1:
            await box[0].next_request(reader)  # take the second request, answer nothing
            return
        while await box[0].next_request(reader):
            writer.write(OK_BYTES)

    async with RawServer(handler) as server:
        box.append(server)
        client = native(server.url)
        assert [await text(client), await text(client)] == ["Hello", "Hello"]
        await client.aclose()
    assert server.connections == 2
    assert len(server.requests) == 3


@pytest.mark.asyncio
async def test_a_fresh_connection_closed_without_answer_is_an_error() -> None:
    box: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await box[0].next_request(reader)

    async with RawServer(handler) as server:
        box.append(server)
        client = native(server.url)
        with pytest.raises(ConnectError, match="no response"):
            await text(client)
        await client.aclose()
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        head(200, SSE, CHUNKED, "connection: close") + chunked(sse_body("Hel", "lo")),
        b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\n" + sse_body("Hel", "lo"),
        head(200, SSE) + sse_body("Hel", "lo"),  # close-delimited
    ],
    ids=["connection-close", "http-1.0", "close-delimited"],
)
@pytest.mark.asyncio
async def test_responses_that_end_the_connection_are_not_pooled(answer: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if await read_request(reader):
            writer.write(answer)
            await writer.drain()

    async with RawServer(handler) as server:
        client = native(server.url)
        assert [await text(client), await text(client)] == ["Hello", "Hello"]
        assert (pool(client).opened, pool(client).idle) == (2, 0)
        await client.aclose()


# -- framing ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_head_and_body_split_into_single_bytes() -> None:
    body = sse_body("a", "b", "c")
    answer = head(200, SSE, f"content-length: {len(body)}") + body
    box: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await box[0].next_request(reader):
            for i in range(len(answer)):
                writer.write(answer[i : i + 1])
                await writer.drain()
                if i % 16 == 0:
                    await asyncio.sleep(0)

    async with RawServer(handler) as server:
        box.append(server)
        client = native(server.url)
        async with client.stream({"messages": []}) as stream:
            events = [e async for e in stream]
        assert [e.text for e in events if isinstance(e, TextDelta)] == ["a", "b", "c"]
        assert await text(client) == "abc"
        assert pool(client).opened == 1  # content-length bodies keep the connection
        await client.aclose()


@pytest.mark.asyncio
async def test_informational_responses_extensions_and_trailers() -> None:
    events = sse_body("Hel", "lo").split(b"\n\n")
    parts = [e + b"\n\n" for e in events if e]
    framed = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts)
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n"
        + head(200, SSE, CHUNKED)
        + framed
        + b"0\r\nx-trailer: 1\r\nx-other: 2\r\n\r\n"
    )
    box: list[RawServer] = []
    async with RawServer(serve_each(box, answer)) as server:
        box.append(server)
        client = native(server.url)
        assert [await text(client), await text(client)] == ["Hello", "Hello"]
        assert pool(client).opened == 1  # the trailers ended the body cleanly
        await client.aclose()


@pytest.mark.asyncio
async def test_gzip_encoded_stream_and_json_answer() -> None:
    answer = {"id": "x", "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
              "message": {"role": "assistant", "content": "Hi."}}]}  # fmt: skip
    zipped = gzip.compress(sse_body("zip", "ped"))
    plain_json = json.dumps(answer).encode()

    box: list[RawServer] = []

    def answer_for(n: int) -> bytes:
        if n == 1:
            return head(200, SSE, CHUNKED, "content-encoding: gzip") + chunked(
                zipped[:7], zipped[7:20], zipped[20:]
            )
        return (
            head(200, "content-type: application/json", f"content-length: {len(plain_json)}")
            + plain_json
        )

    async with RawServer(serve_each(box, answer_for)) as server:
        box.append(server)
        client = native(server.url)
        assert await text(client) == "zipped"
        completion = await client.complete({"messages": []}, stream=False)
        assert completion.choice.content == "Hi."
        assert pool(client).opened == 1
        await client.aclose()
    assert b"Accept-Encoding: gzip, deflate\r\n" in server.requests[0]


@pytest.mark.asyncio
async def test_unsupported_content_encoding_is_a_protocol_error() -> None:
    from runtime.completions import StreamProtocolError

    answer = head(200, SSE, CHUNKED, "content-encoding: br") + chunked(b"xxxx")
    box: list[RawServer] = []
    async with RawServer(serve_each(box, answer)) as server:
        box.append(server)
        client = native(server.url)
        with pytest.raises(StreamProtocolError, match="content-encoding"):
            await text(client)
        assert pool(client).idle == 0
        await client.aclose()


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (b"HTTP/1.1 200 OK\r\nx: " + b"a" * (_http.MAX_HEAD + 10), ConnectError, "larger than"),
        (b"SPDY/3 200 OK\r\n\r\n", ConnectError, "status line"),
        (b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n", ConnectError, "header"),
        (head(200, SSE, CHUNKED) + b"zz\r\n", StreamTruncated, "chunk size"),
        (head(200, SSE, CHUNKED) + b"3\r\nabcXY", StreamTruncated, "CRLF"),
        (head(200, SSE, "content-length: x1"), ConnectError, "content-length"),
    ],
    ids=["oversized-head", "status-line", "header-line", "chunk-size", "chunk-crlf", "length"],
)
@pytest.mark.asyncio
async def test_malformed_responses(answer: bytes, error: type[Exception], match: str) -> None:
    box: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if await box[0].next_request(reader):
            writer.write(answer)
            await writer.drain()
            await reader.read()  # keep the connection until the client drops it

    async with RawServer(handler) as server:
        box.append(server)
        client = native(server.url, timeouts=Timeouts(read=5))
        with pytest.raises(error, match=match):
            await asyncio.wait_for(text(client), 10)
        await asyncio.wait_for(server.closed.wait(), 5)  # the client closed the connection
        assert pool(client).idle == 0
        await client.aclose()


@pytest.mark.asyncio
async def test_bytes_after_the_body_or_while_idle_discard_the_connection() -> None:
    box: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await box[0].next_request(reader):
            writer.write(OK_BYTES + (b"HTTP/1.1 200 surprise\r\n" if n == 1 else b""))
            await writer.drain()
            if n == 2:
                await asyncio.sleep(0.05)
                writer.write(b"unsolicited")  # while the connection is idle in the pool

    async with RawServer(handler) as server:
        box.append(server)
        client = native(server.url)
        assert await text(client) == "Hello"
        assert await text(client) == "Hello"
        await asyncio.sleep(0.2)
        assert await text(client) == "Hello"
        await client.aclose()
    assert server.connections == 3


# -- cancellation -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cancellation_mid_body_returns_nothing_to_the_pool() -> None:
    first = data({"id": "c", "choices": [{"index": 0, "delta": {"content": "a"}}]})
    box: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await box[0].next_request(reader):
            if n == 1:
                writer.write(head(200, SSE, CHUNKED) + b"%x\r\n%s\r\n" % (len(first), first))
                await writer.drain()
                await reader.read()  # stall until the client goes away
                return
            writer.write(OK_BYTES)

    async with RawServer(handler) as server:
        box.append(server)
        client = native(server.url)
        got_one = asyncio.Event()

        async def consume() -> None:
            async with client.stream({"messages": []}) as stream:
                async for _ in stream:
                    got_one.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(got_one.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool(client).idle == 0
        await asyncio.wait_for(server.closed.wait(), 5)
        assert await text(client) == "Hello"
        assert pool(client).opened == 2
        await client.aclose()


@pytest.mark.asyncio
async def test_cancellation_while_waiting_for_the_head() -> None:
    box: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await box[0].next_request(reader):
            if n == 1:
                await reader.read()
                return
            writer.write(OK_BYTES)

    async with RawServer(handler) as server:
        box.append(server)
        client = native(server.url)
        task = asyncio.create_task(text(client))
        await asyncio.wait_for(server.request_seen.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool(client).idle == 0
        assert await text(client) == "Hello"
        await client.aclose()
    assert server.connections == 2


# -- TLS ----------------------------------------------------------------------------------------


def self_signed(tmp: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.asyncio
async def test_https_with_a_trusted_certificate_and_rejection_of_an_untrusted_one(
    tmp_path: Path,
) -> None:
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    requests = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            while await read_request(reader):
                requests += 1
                writer.write(OK_BYTES)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        client = native(url, ssl_context=trusted)
        assert [await text(client), await text(client)] == ["Hello", "Hello"]
        assert pool(client).opened == 1
        await client.aclose()
        untrusted = native(url)  # the system's CAs do not know this certificate
        with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await text(untrusted)
        await untrusted.aclose()
    finally:
        server.close()
        await server.wait_closed()
    assert requests == 2


# -- choosing the path --------------------------------------------------------------------------


def test_backend_choice() -> None:
    url = "https://api.example.com/v1/chat/completions"
    assert choose_backend("auto", url, {}) == "native"
    assert choose_backend("auto", url, {"HTTPS_PROXY": "http://proxy:3128"}) == "httpx2"
    assert choose_backend("auto", url, {"https_proxy": "http://proxy:3128"}) == "httpx2"
    assert choose_backend("auto", url, {"ALL_PROXY": "socks5://p"}) == "httpx2"
    assert choose_backend("auto", url, {"HTTP_PROXY": "http://p"}) == "native"  # other scheme
    assert choose_backend("auto", "http://h/v1", {"HTTP_PROXY": "http://p"}) == "httpx2"
    assert choose_backend("auto", url, {"HTTPS_PROXY": " "}) == "native"
    assert choose_backend("auto", url, {"NPC_HTTP_CLIENT": "httpx2"}) == "httpx2"
    assert choose_backend("auto", "http://u:p@h/v1", {}) == "httpx2"
    assert choose_backend("native", url, {"HTTPS_PROXY": "http://p"}) == "native"
    with pytest.raises(ValueError, match="backend"):
        choose_backend("curl", url, {})


@pytest.mark.asyncio
async def test_injected_httpx2_client_is_always_used() -> None:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(str(request.url))
        return httpx2.Response(200, headers={"content-type": "text/event-stream"},
                               content=sse_body("mock"))  # fmt: skip

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    client = CompletionsClient("http://h/v1", KEY, http=http, backend="native")
    assert (client.backend, client._pool) == ("httpx2", None)
    assert await text(client) == "mock"
    await client.aclose()
    await http.aclose()
    assert seen == ["http://h/v1/chat/completions"]


@pytest.mark.parametrize("bad", ["sk-a\r\nX-Injected: 1", "sk-\nb"])
def test_header_injection_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="header"):
        CompletionsClient("http://h/v1", bad, backend="native")
