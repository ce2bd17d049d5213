"""The offline model's wire format: OpenAI's chunk layout, parsed identically by the openai SDK
and by an independent minimal SSE parse, streamed and non-streamed."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest

from runtime.completions import CompletionsClient, TextDelta, ToolCallFinished
from runtime.offline import OFFLINE_BASE_URL, OfflineModel, make_http_client
from tests.runtime.offline._offline_support import (
    assemble_json,
    assemble_stream,
    sse_events,
    tools_for,
    village_characters,
)

PERCEPTIONS = [
    'player says: "oak"',
    'player says: "hello there"',
    'player says: "I want to buy an apple"',
    'player says: "follow me"',
    'player says: "what do you know?"',
    "player waves at you",
]


def _client(app: OfflineModel) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url=OFFLINE_BASE_URL)


def _requests() -> list[dict[str, Any]]:
    out = []
    for cid in ("guard", "merchant", "villager", "nobody"):
        tools = tools_for(cid) if cid != "nobody" else tools_for("guard")
        for i, text in enumerate(PERCEPTIONS):
            for salt in range(4):
                out.append(
                    {
                        "model": cid,
                        "messages": [
                            {"role": "user", "content": f"{text} ({salt})" if salt else text}
                        ],
                        "tools": tools,
                        "_i": i,
                    }
                )
    return out


@pytest.mark.asyncio
async def test_chunk_layout_matches_openai() -> None:
    app = OfflineModel(village_characters(), seed=3)
    async with _client(app) as client:
        seen_calls = seen_text = 0
        for request in _requests():
            request.pop("_i")
            body = {**request, "stream": True, "stream_options": {"include_usage": True}}
            response = await client.post("chat/completions", json=body)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response.content)
            assert events[-1] == ("message", "[DONE]")
            chunks = [json.loads(data) for _, data in events[:-1]]
            assert len({c["id"] for c in chunks}) == 1
            assert all(c["object"] == "chat.completion.chunk" for c in chunks)
            assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
            assert chunks[-1]["choices"] == []
            assert chunks[-1]["usage"]["total_tokens"] > 0
            finish = chunks[-2]["choices"][0]
            assert finish["delta"] == {}
            assert finish["finish_reason"] in ("stop", "tool_calls")
            fragments = [
                tc for c in chunks[1:-2] for tc in c["choices"][0]["delta"].get("tool_calls", ())
            ]
            if fragments:
                seen_calls += 1
                assert finish["finish_reason"] == "tool_calls"
                first, rest = fragments[0], fragments[1:]
                assert first["id"].startswith("call_")
                assert first["type"] == "function"
                assert first["function"]["name"]
                assert first["function"]["arguments"] == ""
                assert len(rest) >= 2, "arguments must come in several fragments"
                for fragment in rest:
                    assert set(fragment) == {"index", "function"}
                    assert set(fragment["function"]) == {"arguments"}
                args = "".join(f["function"]["arguments"] for f in rest)
                assert isinstance(json.loads(args), dict)
            else:
                seen_text += 1
                assert finish["finish_reason"] == "stop"
    assert seen_calls > 10
    assert seen_text > 10


@pytest.mark.asyncio
async def test_usage_chunk_only_when_asked() -> None:
    app = OfflineModel(village_characters())
    async with _client(app) as client:
        body = {"model": "guard", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        response = await client.post("chat/completions", json=body)
    chunks = [json.loads(d) for _, d in sse_events(response.content)[:-1]]
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)


@pytest.mark.asyncio
async def test_openai_sdk_parses_the_same_as_the_minimal_parser() -> None:
    app = OfflineModel(village_characters(), seed=11)
    async with _client(app) as http:
        sdk = openai.AsyncOpenAI(api_key="unused", base_url=OFFLINE_BASE_URL, http_client=http)
        for request in _requests():
            request.pop("_i")
            raw = await http.post(
                "chat/completions",
                json={**request, "stream": True, "stream_options": {"include_usage": True}},
            )
            mine = assemble_stream(raw.content)
            stream = await sdk.chat.completions.create(
                **request, stream=True, stream_options={"include_usage": True}
            )
            content = ""
            calls: dict[int, list[Any]] = {}
            finish = usage = None
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage.model_dump(exclude_none=True)
                for choice in chunk.choices:
                    content += choice.delta.content or ""
                    for tc in choice.delta.tool_calls or ():
                        slot = calls.setdefault(tc.index, [None, "", ""])
                        slot[0] = tc.id or slot[0]
                        slot[1] += (tc.function.name if tc.function else None) or ""
                        slot[2] += (tc.function.arguments if tc.function else None) or ""
                    finish = choice.finish_reason or finish
            assert (content or None) == mine.content
            assert [tuple(calls[i]) for i in sorted(calls)] == mine.tool_calls
            assert finish == mine.finish_reason
            assert usage is not None
            assert mine.usage is not None
            assert usage["total_tokens"] == mine.usage["total_tokens"]

            # Non-streaming: the SDK's typed object and the raw JSON agree with the stream.
            whole = await sdk.chat.completions.create(**request)
            message = whole.choices[0].message
            assert message.content == mine.content
            sdk_calls = [
                (c.id, c.function.name, c.function.arguments) for c in message.tool_calls or ()
            ]
            assert sdk_calls == mine.tool_calls
            assert whole.choices[0].finish_reason == mine.finish_reason
            raw_json = await http.post("chat/completions", json=request)
            assert assemble_json(raw_json.content).tool_calls == mine.tool_calls


@pytest.mark.asyncio
async def test_make_http_client_offline_speaks_sse() -> None:
    client = make_http_client("offline", characters=village_characters(), seed=1)
    async with client:
        assert str(client.base_url).rstrip("/") == OFFLINE_BASE_URL
        body = {
            "model": "guard",
            "messages": [{"role": "user", "content": 'player says: "oak"'}],
            "tools": tools_for("guard"),
            "stream": True,
        }
        response = await client.post("chat/completions", json=body)
    result = assemble_stream(response.content)
    assert result.done
    assert result.role_first
    assert [(name, args) for _, name, args in result.tool_calls] == [("openGate", "{}")]


@pytest.mark.asyncio
async def test_max_tokens_cuts_text_with_finish_length() -> None:
    app = OfflineModel(village_characters())
    body = {
        "model": "guard",
        "messages": [{"role": "user", "content": 'player says: "let me in"'}],
        "max_tokens": 2,
        "stream": True,
    }
    async with _client(app) as client:
        result = assemble_stream((await client.post("chat/completions", json=body)).content)
    assert result.finish_reason == "length"
    assert result.content == "Not without the password, stranger."[:8]


@pytest.mark.asyncio
async def test_completions_client_assembles_the_same_as_the_minimal_parser() -> None:
    app = OfflineModel(village_characters(), seed=11)
    async with _client(app) as http:
        client = CompletionsClient(OFFLINE_BASE_URL, None, http=http)
        for request in _requests():
            request.pop("_i")
            raw = await http.post(
                "chat/completions",
                json={**request, "stream": True, "stream_options": {"include_usage": True}},
            )
            mine = assemble_stream(raw.content)
            text = ""
            finished: list[tuple[str | None, str, str]] = []
            async with client.stream(request) as stream:
                async for event in stream:
                    if isinstance(event, TextDelta):
                        text += event.text
                    elif isinstance(event, ToolCallFinished):
                        finished.append((event.id, event.name, event.arguments))
            choice = stream.completion.choice
            assert choice.content == mine.content
            assert (text or None) == mine.content
            assert [(c.id, c.name, c.arguments) for c in choice.tool_calls] == mine.tool_calls
            assert finished == mine.tool_calls
            assert choice.finish_reason == mine.finish_reason
            usage = stream.completion.usage
            assert usage is not None
            assert mine.usage is not None
            assert usage.total_tokens == mine.usage["total_tokens"]
            whole = await client.complete(request, stream=False)
            assert whole.choice.content == mine.content
            assert [(c.id, c.name, c.arguments) for c in whole.choice.tool_calls] == mine.tool_calls
