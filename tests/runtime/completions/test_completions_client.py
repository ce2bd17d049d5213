"""The client's I/O behaviour against a real loopback HTTP server that counts requests:
URLs, request bodies, retries and their budget, timeouts, cancellation, concurrency, secrecy."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import httpx2
import pytest

from runtime.completions import (
    BadRequest,
    CompletionsClient,
    CompletionsError,
    ConnectError,
    HTTPStatusError,
    NotFound,
    ProviderError,
    RateLimited,
    RetryPolicy,
    ServerError,
    StreamTruncated,
    TextDelta,
    Timeouts,
    ToolCallFinished,
    Unauthorized,
    endpoint_url,
    parse_retry_after,
)
from runtime.completions import (
    TimeoutError as CompletionsTimeout,
)
from runtime.completions import client as client_module
from tests.runtime.completions.completions_server import Reply, Request, ScriptedServer

KEY = "sk-SECRET-0123456789abcdef"


def data(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def text_chunks(*pieces: str, finish: str = "stop") -> list[bytes]:
    out = [data({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": p}}]})
           for p in pieces]  # fmt: skip
    out.append(data({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
    out.append(data({"id": "c", "choices": [], "usage": {"prompt_tokens": 1, "total_tokens": 2}}))
    out.append(b"data: [DONE]\n\n")
    return out


OK = Reply(chunks=text_chunks("Hel", "lo"))


class Sleeps:
    """Records backoff sleeps instead of sleeping (no timing in tests)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make(server: ScriptedServer, **kw: Any) -> tuple[CompletionsClient, Sleeps]:
    sleeps = Sleeps()
    kw.setdefault("retry", RetryPolicy(max_retries=2, initial_delay=0.01, max_wait=5))
    return CompletionsClient(server.base_url, KEY, model="m", sleep=sleeps, **kw), sleeps


async def read_all(client: CompletionsClient, body: dict[str, Any] | None = None) -> list[Any]:
    async with client.stream(body or {"messages": []}) as stream:
        return [event async for event in stream]


# -- URLs and configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("https://api.openai.com/v1", "https://api.openai.com/v1/chat/completions"),
        ("https://api.mindforge.ai/v1/", "https://api.mindforge.ai/v1/chat/completions"),
        ("https://mdb.ai", "https://mdb.ai/chat/completions"),
        ("http://localhost:11434/v1", "http://localhost:11434/v1/chat/completions"),
        ("http://10.0.0.5:8000/v1", "http://10.0.0.5:8000/v1/chat/completions"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/chat/completions"),
        ("http://h/v1/chat/completions", "http://h/v1/chat/completions"),
    ],
)
def test_endpoint_url_per_provider(base: str, url: str) -> None:
    assert endpoint_url(base) == url


@pytest.mark.parametrize("bad", ["", "api.openai.com/v1", "ftp://x/v1", "offline", "http://"])
def test_endpoint_url_rejects_non_http(bad: str) -> None:
    with pytest.raises(ValueError, match="http"):
        endpoint_url(bad)


def test_from_env_like_the_openai_sdk() -> None:
    env = {"OPENAI_BASE_URL": "https://mdb.ai", "OPENAI_API_KEY": KEY, "OTHER": "sk-other-key"}
    client = CompletionsClient.from_env(environ=env)
    assert client.url == "https://mdb.ai/chat/completions"
    assert client._key == KEY
    assert (
        CompletionsClient.from_env("https://x/v1", environ=env).url
        == "https://x/v1/chat/completions"
    )
    assert (
        CompletionsClient.from_env(environ={}).url == "https://api.openai.com/v1/chat/completions"
    )
    assert CompletionsClient.from_env(environ={}, api_key_env="OTHER")._key is None
    assert CompletionsClient.from_env(environ=env, api_key_env="OTHER")._key == "sk-other-key"
    assert CompletionsClient.from_env(api_key="sk-explicit-1", environ=env)._key == "sk-explicit-1"


def test_encode_adds_only_top_level_fields_and_never_mutates() -> None:
    messages = [{"role": "user", "content": "hé", "custom": {"kept": [1, 2]}}]
    tools = [{"type": "function", "function": {"name": "go", "parameters": {"type": "object"}}}]
    body = {"messages": messages, "tools": tools, "temperature": 0.2, "top_p": 1,
            "max_tokens": 5, "stop": ["\n"], "frequency_penalty": 0.5, "tool_choice": "auto",
            "parallel_tool_calls": False, "seed": 7, "provider_extra": {"x": 1}}  # fmt: skip
    before = json.dumps(body)
    client = CompletionsClient("http://h/v1", model="m")
    sent = json.loads(client.encode(body))
    assert json.dumps(body) == before
    assert sent == {**body, "model": "m", "stream": True, "stream_options": {"include_usage": True}}
    assert json.loads(client.encode({**body, "model": "other"}))["model"] == "other"
    plain = json.loads(
        client.encode({**body, "stream_options": {"include_usage": True}}, stream=False)
    )
    assert plain["stream"] is False
    assert "stream_options" not in plain
    no_usage = CompletionsClient("http://h/v1", include_usage=False)
    assert "stream_options" not in json.loads(no_usage.encode(body))
    with pytest.raises(ValueError, match="JSON"):
        client.encode({"messages": [], "temperature": float("nan")})


def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert (
        parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0)
        == 10.0
    )
    assert (
        parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412490.0) == 0.0
    )
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "nan"}) is None
    assert parse_retry_after({}) is None


# -- requests on the wire -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_streamed_request_on_the_wire_and_events() -> None:
    async with ScriptedServer([OK]) as server:
        client, _ = make(server)
        events = await read_all(client, {"messages": [{"role": "user", "content": "hi"}]})
        await client.aclose()
    request = server.requests[0]
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["accept"] == "text/event-stream"
    assert json.loads(request.body)["stream"] is True
    assert [e for e in events if isinstance(e, TextDelta)] == [
        TextDelta(0, "Hel"),
        TextDelta(0, "lo"),
    ]


@pytest.mark.asyncio
async def test_no_key_no_authorization_header() -> None:
    async with ScriptedServer([OK]) as server:
        client = CompletionsClient(server.base_url)
        await client.complete({"messages": [], "model": "m"})
        await client.aclose()
    assert "authorization" not in server.requests[0].headers


@pytest.mark.asyncio
async def test_non_streaming_complete() -> None:
    answer = {"id": "x", "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
              "message": {"role": "assistant", "content": "Hi."}}]}  # fmt: skip
    reply = Reply(
        chunks=[json.dumps(answer).encode()], headers={"content-type": "application/json"}
    )
    async with ScriptedServer([reply]) as server:
        client, _ = make(server)
        completion = await client.complete({"messages": []}, stream=False)
        await client.aclose()
    assert completion.choice.content == "Hi."
    assert json.loads(server.requests[0].body)["stream"] is False


@pytest.mark.asyncio
async def test_server_ignoring_stream_true_still_yields_events() -> None:
    answer = {"id": "x", "model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls",
              "message": {"content": None, "tool_calls": [
                  {"id": "t1", "function": {"name": "go", "arguments": "{}"}}]}}]}  # fmt: skip
    reply = Reply(
        chunks=[json.dumps(answer).encode()], headers={"content-type": "application/json"}
    )
    async with ScriptedServer([reply]) as server:
        client, _ = make(server)
        events = await read_all(client)
        await client.aclose()
    assert ToolCallFinished(0, 0, "t1", "go", "{}") in events


# -- retries ------------------------------------------------------------------------------------


def status(code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Reply:
    payload = body or json.dumps({"error": {"message": f"status {code}", "code": "c"}}).encode()
    return Reply(status=code, chunks=[payload], headers={"content-type": "application/json",
                                                          **(headers or {})})  # fmt: skip


@pytest.mark.asyncio
async def test_429_retry_after_is_honoured_then_success() -> None:
    async with ScriptedServer([status(429, {"retry-after": "0.3"}), OK]) as server:
        client, sleeps = make(server)
        completion = await client.complete({"messages": []})
        await client.aclose()
    assert completion.choice.content == "Hello"
    assert len(server.requests) == 2
    assert sleeps.calls == [0.3]


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [500, 502, 503, 408, 409])
async def test_retryable_statuses_exhaust_the_budget(code: int) -> None:
    async with ScriptedServer([status(code)]) as server:
        client, sleeps = make(server)
        with pytest.raises(HTTPStatusError) as info:
            await read_all(client)
        await client.aclose()
    assert len(server.requests) == 3  # 1 + max_retries
    assert len(sleeps.calls) == 2
    assert sleeps.calls[0] <= 0.01
    assert sleeps.calls[1] <= 0.02
    assert info.value.status == code
    assert info.value.message == f"status {code}"
    assert info.value.headers["content-type"] == "application/json"
    assert isinstance(info.value, ServerError) == (code >= 500)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (400, BadRequest),
        (401, Unauthorized),
        (403, Unauthorized),
        (404, NotFound),
        (422, BadRequest),
    ],
)
async def test_client_errors_are_not_retried(code: int, kind: type[Exception]) -> None:
    async with ScriptedServer([status(code), OK]) as server:
        client, sleeps = make(server)
        with pytest.raises(kind) as info:
            await client.complete({"messages": []})
        await client.aclose()
    assert len(server.requests) == 1
    assert sleeps.calls == []
    assert isinstance(info.value, HTTPStatusError)
    assert info.value.status == code


@pytest.mark.asyncio
async def test_retry_after_beyond_the_budget_fails_at_once() -> None:
    async with ScriptedServer([status(429, {"retry-after": "3600"}), OK]) as server:
        client, sleeps = make(server)
        with pytest.raises(RateLimited):
            await client.complete({"messages": []})
        await client.aclose()
    assert len(server.requests) == 1
    assert sleeps.calls == []


@pytest.mark.asyncio
async def test_connect_error_is_retried_then_reported() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    sleeps = Sleeps()
    client = CompletionsClient(
        f"http://127.0.0.1:{port}/v1", KEY, sleep=sleeps, retry=RetryPolicy(max_retries=2)
    )
    with pytest.raises(ConnectError):
        await client.complete({"messages": [], "model": "m"})
    await client.aclose()
    assert len(sleeps.calls) == 2


@pytest.mark.asyncio
async def test_stream_cut_before_any_event_is_retried() -> None:
    head_only = data({"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    async with ScriptedServer([Reply(chunks=[head_only], cut=True), OK]) as server:
        client, sleeps = make(server)
        events = await read_all(client)
        await client.aclose()
    assert len(server.requests) == 2
    assert len(sleeps.calls) == 1
    assert TextDelta(0, "Hel") in events


@pytest.mark.asyncio
async def test_stream_cut_after_events_were_handed_out_is_not_retried() -> None:
    cut = Reply(chunks=text_chunks("Hel", "lo")[:1], cut=True)
    async with ScriptedServer([cut, OK]) as server:
        client, _ = make(server)
        seen: list[Any] = []

        async def consume() -> None:
            async with client.stream({"messages": []}) as stream:
                async for event in stream:
                    seen.append(event)

        with pytest.raises(StreamTruncated):
            await consume()
        await client.aclose()
    assert seen == [TextDelta(0, "Hel")]
    assert len(server.requests) == 1


@pytest.mark.asyncio
async def test_complete_retries_a_cut_stream_even_mid_way() -> None:
    cut = Reply(chunks=text_chunks("Hel", "lo")[:2], cut=True)
    async with ScriptedServer([cut, OK]) as server:
        client, _ = make(server)
        completion = await client.complete({"messages": []})
        await client.aclose()
    assert completion.choice.content == "Hello"
    assert len(server.requests) == 2


@pytest.mark.asyncio
async def test_mid_stream_provider_error_is_raised_not_retried() -> None:
    error = b'event: error\ndata: {"error": {"message": "bad tool", "code": "tool_use_failed"}}\n\n'
    async with ScriptedServer([Reply(chunks=[*text_chunks("a")[:1], error]), OK]) as server:
        client, _ = make(server)
        with pytest.raises(ProviderError, match="bad tool"):
            await client.complete({"messages": []})
        await client.aclose()
    assert len(server.requests) == 1


# -- timeouts and cancellation ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_read_timeout_when_the_stream_stalls() -> None:
    async with ScriptedServer([Reply(chunks=text_chunks("a")[:1], stall=True)]) as server:
        client, _ = make(server, timeouts=Timeouts(read=0.2), retry=RetryPolicy(max_retries=0))
        with pytest.raises(CompletionsTimeout) as info:
            await read_all(client)
        await client.aclose()
    assert info.value.phase == "read"
    assert isinstance(info.value, TimeoutError)


@pytest.mark.asyncio
async def test_total_timeout_on_a_slow_trickle() -> None:
    slow = Reply(chunks=text_chunks(*"abcdefghijklmnopqrstuvwxyz"), delay_between=0.05)
    async with ScriptedServer([slow]) as server:
        client, _ = make(server, timeouts=Timeouts(read=5, total=0.3))
        with pytest.raises(CompletionsTimeout) as info:
            await read_all(client)
        await asyncio.sleep(0)  # the deadline's cancellation did not leak into this task
        await client.aclose()
    assert info.value.phase == "total"
    assert len(server.requests) == 1


@pytest.mark.asyncio
async def test_total_timeout_while_waiting_for_a_response() -> None:
    async with ScriptedServer([Reply(chunks=text_chunks("a"), delay_before=5)]) as server:
        client, _ = make(server, timeouts=Timeouts(read=10, total=0.2))
        with pytest.raises(CompletionsTimeout) as info:
            await client.complete({"messages": []})
        await client.aclose()
    assert info.value.phase == "total"


@pytest.mark.asyncio
async def test_connect_timeout_is_mapped() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectTimeout("timed out", request=request)

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    client = CompletionsClient("http://h/v1", KEY, http=http, retry=RetryPolicy(max_retries=0))
    with pytest.raises(CompletionsTimeout) as info:
        await client.complete({"messages": []})
    assert info.value.phase == "connect"
    await http.aclose()


@pytest.mark.asyncio
async def test_cancelling_the_consumer_closes_the_stream_promptly() -> None:
    async with ScriptedServer([Reply(chunks=text_chunks("a")[:1], stall=True), OK]) as server:
        client, _ = make(server, max_concurrency=1)
        first = asyncio.Event()

        async def consume() -> None:
            async with client.stream({"messages": []}) as stream:
                async for _ in stream:
                    first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The server sees the connection go away (it stalls until the client closes it)...
        await asyncio.wait_for(server.connection_closed.wait(), 5)
        # ...and the one concurrency slot is free again.
        completion = await asyncio.wait_for(client.complete({"messages": []}), 5)
        assert completion.choice.content == "Hello"
        await client.aclose()


@pytest.mark.asyncio
async def test_done_then_a_body_that_never_ends_still_completes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "_DRAIN_AFTER_DONE_S", 0.1)
    async with ScriptedServer([Reply(chunks=text_chunks("a"), stall=True)]) as server:
        client, _ = make(server)
        completion = await asyncio.wait_for(client.complete({"messages": []}), 5)
        await client.aclose()
    assert completion.choice.content == "a"


# -- concurrency --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_max_concurrency_bounds_requests_in_flight() -> None:
    slow = Reply(chunks=text_chunks("a", "b"), delay_before=0.02, delay_between=0.01)
    async with ScriptedServer([slow]) as server:
        client, _ = make(server, max_concurrency=2)
        results = await asyncio.gather(*(client.complete({"messages": []}) for _ in range(8)))
        await client.aclose()
    assert [r.choice.content for r in results] == ["ab"] * 8
    assert len(server.requests) == 8
    assert server.max_in_flight == 2


# -- secrecy ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_api_key_never_in_errors_reprs_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    echo = json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}"}}).encode()

    def script(request: Request) -> Reply:
        if len(server.requests) == 1:
            return status(500, {"x-echo": KEY}, echo)
        if len(server.requests) == 2:
            error = json.dumps({"error": {"message": f"key {KEY} is bad", "code": 400}})
            return Reply(chunks=[b"event: error\ndata: " + error.encode() + b"\n\n"])
        if len(server.requests) == 3:
            return status(401, {"x-echo": KEY}, echo)
        return OK

    caught: list[BaseException] = []
    caplog.set_level(logging.DEBUG)
    async with ScriptedServer(script) as server:
        client, _ = make(server)
        for _ in range(2):
            try:
                await client.complete({"messages": []})
            except CompletionsError as error:
                caught.append(error)
        async with client.stream({"messages": []}) as stream:
            texts = [repr(client), str(client), repr(stream)]
        await client.aclose()
    assert [type(e) for e in caught] == [ProviderError, Unauthorized]
    for exc in caught:
        texts += [str(exc), repr(exc), repr(vars(exc))]
    # Our logs and httpx2's (httpcore2's DEBUG trace prints the *server's* headers verbatim).
    texts += [r.getMessage() for r in caplog.records if not r.name.startswith("httpcore")]
    assert any("retry" in t for t in texts)  # the retry was logged...
    assert len(server.requests) == 4
    for text in texts:
        assert KEY not in text  # ...without the key


@pytest.mark.asyncio
async def test_gzip_encoded_stream_is_decoded() -> None:
    import gzip

    raw = gzip.compress(b"".join(text_chunks("zip", "ped")))

    def handler(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
        return httpx2.Response(200, headers=headers, content=raw)

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    client = CompletionsClient("http://h/v1", KEY, http=http, model="m")
    assert (await client.complete({"messages": []})).choice.content == "zipped"
    await http.aclose()


@pytest.mark.asyncio
async def test_the_parametrized_http_path_is_the_one_used(http_path: str) -> None:
    """Every test of this module runs on both HTTP paths (see conftest.py)."""
    async with ScriptedServer([OK]) as server:
        client, _ = make(server)
        assert client.backend == http_path
        assert (client._pool is not None) == (http_path == "native")
        assert (await client.complete({"messages": []})).choice.content == "Hello"
        await client.aclose()
