"""Recorded provider traffic (../shared/vectors) through the decoder, the assembler and the
client, served by httpx2.MockTransport and by a real loopback HTTP server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from runtime.completions import (
    CompletionsClient,
    ProviderError,
    SSEDecoder,
    StreamAssembler,
    TextDelta,
    ToolCallFinished,
)
from tests.runtime.completions.completions_server import Reply, ScriptedServer, sse_events

OPENAI_FILES = [
    "173417d55340.sse", "2018feb66ae1.sse", "4cc50a6135d2.sse", "569c877e6942.sse",
    "7e5ea4d12e7c.sse", "83b060bae42e.sse", "a247c49c5fcd.sse", "a491adda08c3.sse",
    "c6aa7e397b71.sse", "d61558011839.sse", "e2aad469b71d.sse", "f82268f2fefd.sse",
]  # fmt: skip
SSE_HEADERS = {"content-type": "text/event-stream"}


def expected(vectors: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((vectors / "openai-recorded" / "expected.json").read_text())
    return data


def test_every_recorded_file_has_an_expectation(vectors: Path) -> None:
    on_disk = sorted(p.name for p in (vectors / "openai-recorded").glob("*.sse"))
    assert on_disk == sorted(OPENAI_FILES) == sorted(expected(vectors))


@pytest.mark.parametrize("name", OPENAI_FILES)
@pytest.mark.parametrize("split", [1, 13, 0])
def test_openai_recorded_sans_io(vectors: Path, name: str, split: int) -> None:
    raw = (vectors / "openai-recorded" / name).read_bytes()
    decoder, assembler = SSEDecoder(), StreamAssembler()
    step = split or len(raw)
    for i in range(0, len(raw), step):
        assembler.feed(decoder.feed(raw[i : i + step]))
    assembler.feed(decoder.close(), at_eof=True)
    assembler.end()
    assert assembler.completion().to_dict() == expected(vectors)[name]


def mock_client(raw: bytes, piece: int | None = None) -> CompletionsClient:
    async def body() -> AsyncIterator[bytes]:
        step = piece or len(raw)
        for i in range(0, len(raw), step):
            yield raw[i : i + step]

    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.headers["authorization"] == "Bearer sk-test-vectors"
        return httpx2.Response(200, headers=SSE_HEADERS, content=body())

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return CompletionsClient("http://mock/v1", "sk-test-vectors", http=http, model="gpt-4o")


@pytest.mark.asyncio
@pytest.mark.parametrize("name", OPENAI_FILES)
async def test_openai_recorded_via_mock_transport(vectors: Path, name: str) -> None:
    raw = (vectors / "openai-recorded" / name).read_bytes()
    want = expected(vectors)[name]
    async with mock_client(raw, piece=97) as client:
        async with client.stream({"messages": [{"role": "user", "content": "hi"}]}) as stream:
            events = [event async for event in stream]
        assert stream.completion.to_dict() == want
        texts: dict[int, str] = {}
        for event in events:
            if isinstance(event, TextDelta):
                texts[event.choice] = texts.get(event.choice, "") + event.text
        assert {c["index"]: c["content"] for c in want["choices"] if c["content"]} == texts
        finished = [(e.id, e.name, e.arguments) for e in events if isinstance(e, ToolCallFinished)]
        assert finished == [
            (t["id"], t["name"], t["arguments"]) for c in want["choices"] for t in c["tool_calls"]
        ]
        assert (await client.complete({"messages": []})).to_dict() == want


@pytest.mark.asyncio
async def test_openai_recorded_via_loopback_server(vectors: Path) -> None:
    want = expected(vectors)
    replies = [
        Reply(chunks=sse_events((vectors / "openai-recorded" / n).read_bytes()))
        for n in OPENAI_FILES
    ]
    async with ScriptedServer(replies) as server:
        client = CompletionsClient(server.base_url, "sk-loop", model="gpt-4o")
        for name in OPENAI_FILES:
            async with client.stream({"messages": []}) as stream:
                async for _ in stream:
                    pass
            assert stream.completion.to_dict() == want[name], name
        await client.aclose()
    assert len(server.requests) == len(OPENAI_FILES)
    assert server.requests[0].path == "/v1/chat/completions"
    assert server.requests[0].headers["content-type"] == "application/json"
    # One keep-alive connection served every request: each body was read to its end.
    assert server.closed_connections <= 1


LOOP_CALL = ("call_ZR5UUuTt3pf61kjwAJIYdVMj", "get_capital", '{"country":"UK"}')
GROQ_CALL = (
    "fc_bfb39741-3748-4def-9886-a93fc9c64a90",
    "get_something_by_name",
    '{"name":"example"}',
)
GROQ_TEXT = "The tool returned the expected result for the valid call."
PROVIDER_COMPLETIONS = {
    "openai-full-tool-loop-0": ("tool_calls", None, [LOOP_CALL], 68),
    "openai-full-tool-loop-1": ("stop", "The capital of the UK is London.", [], 87),
    "groq-tool-use-failed-1": ("tool_calls", None, [GROQ_CALL], 353),
    "groq-tool-use-failed-2": ("stop", GROQ_TEXT, [], 397),
}


async def drain(client: CompletionsClient, body: dict[str, Any]) -> None:
    async with client.stream(body) as stream:
        async for _ in stream:
            pass


def provider_request(vectors: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (vectors / "provider-recorded" / f"{name}.request.json").read_text()
    )
    return data


@pytest.mark.asyncio
@pytest.mark.parametrize("name", sorted(PROVIDER_COMPLETIONS))
async def test_provider_recorded_completions(vectors: Path, name: str) -> None:
    raw = (vectors / "provider-recorded" / f"{name}.sse").read_bytes()
    request = provider_request(vectors, name)
    finish, content, calls, total = PROVIDER_COMPLETIONS[name]
    async with (
        ScriptedServer([Reply(chunks=sse_events(raw))]) as server,
        CompletionsClient(server.base_url, "sk-p") as client,
    ):
        completion = await client.complete(request)
    choice = completion.choice
    assert (choice.finish_reason, choice.content) == (finish, content)
    assert [(c.id, c.name, c.arguments) for c in choice.tool_calls] == calls
    assert completion.usage is not None
    assert completion.usage.total_tokens == total
    # The caller's body went out unchanged, plus the streaming fields it lacked.
    sent = json.loads(server.requests[0].body)
    assert sent == {"stream_options": {"include_usage": True}, **request, "stream": True}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("name", "message", "code", "kind"),
    [
        ("groq-tool-use-failed-0", "Tool call", "tool_use_failed", "invalid_request_error"),
        ("openrouter-stream-error-0", "Token limit reached", 400, None),
    ],
)  # fmt: skip
async def test_provider_recorded_errors(
    vectors: Path, name: str, message: str, code: object, kind: str | None
) -> None:
    raw = (vectors / "provider-recorded" / f"{name}.sse").read_bytes()
    async with (
        ScriptedServer([Reply(chunks=sse_events(raw))]) as server,
        CompletionsClient(server.base_url, "sk-p") as client,
    ):
        with pytest.raises(ProviderError) as info:
            await drain(client, provider_request(vectors, name))
    assert info.value.message.startswith(message)
    assert (info.value.code, info.value.type) == (code, kind)
    assert len(server.requests) == 1  # a provider's verdict on the request is not retried
