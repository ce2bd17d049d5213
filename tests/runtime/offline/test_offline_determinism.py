"""Same seed and conversation, same bytes; the misbehaviour knob, fault by fault."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from runtime.offline import (
    OFFLINE_BASE_URL,
    Fault,
    Misbehaviour,
    OfflineConfigError,
    OfflineModel,
)
from tests.runtime.offline._offline_support import (
    assemble_stream,
    play,
    sse_events,
    tools_for,
    village_characters,
)

SCRIPT = {
    "guard": ['player says: "hello"', 'player says: "oak"', 'player says: "where is the well?"'],
    "merchant": ['player says: "an apple please"', "player waves"],
    "villager": ['player says: "follow me"', 'player says: "any news?"'],
    "stranger": ['player says: "who are you?"'],
}


def _client(app: OfflineModel) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url=OFFLINE_BASE_URL)


async def _transcripts(seed: int, misbehaviour: Misbehaviour | None = None) -> list[str]:
    lines: list[str] = []
    async with _client(
        OfflineModel(village_characters(), seed=seed, misbehaviour=misbehaviour)
    ) as c:
        for model, perceptions in SCRIPT.items():
            for i in range(6):
                lines += await play(c, model, [f"{p} #{i}" for p in perceptions])
    return lines


@pytest.mark.asyncio
async def test_same_seed_same_transcript() -> None:
    first = await _transcripts(7)
    assert first == await _transcripts(7)
    assert first != await _transcripts(8)


@pytest.mark.asyncio
async def test_same_seed_same_bytes() -> None:
    body = {
        "model": "guard",
        "messages": [{"role": "user", "content": "tell me something"}],
        "tools": tools_for("guard"),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    raw = []
    for _ in range(2):
        async with _client(OfflineModel(village_characters(), seed=4)) as client:
            raw.append((await client.post("chat/completions", json=body)).content)
    assert raw[0] == raw[1]


@pytest.mark.asyncio
async def test_misbehaving_run_is_reproducible_and_recovers() -> None:
    chaos = Misbehaviour(rate=0.5, delay_s=0.0)
    first = await _transcripts(3, chaos)
    assert first == await _transcripts(3, chaos)
    text = "\n".join(first)
    assert "http 429 retry-after=1" in text
    assert "http 500" in text
    assert "stream error offline_misbehaviour" in text
    assert "UNKNOWN_CAPABILITY" in text
    assert "BAD_INPUT" in text
    assert "gave up" not in text  # a retry of the same request can succeed


async def _one(app: OfflineModel, stream: bool = True) -> httpx2.Response:
    body: dict[str, Any] = {
        "model": "guard",
        "messages": [{"role": "user", "content": "oak"}],
        "tools": tools_for("guard"),
        "stream": stream,
    }
    async with _client(app) as client:
        return await client.post("chat/completions", json=body)


@pytest.mark.asyncio
async def test_each_fault() -> None:
    def app(kind: Fault) -> OfflineModel:
        return OfflineModel(
            village_characters(), misbehaviour=Misbehaviour(rate=1.0, kinds=frozenset({kind}))
        )

    response = await _one(app(Fault.HTTP_429))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"

    response = await _one(app(Fault.HTTP_500))
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"

    response = await _one(app(Fault.ERROR_MID_STREAM))
    assert response.status_code == 200
    events = sse_events(response.content)
    assert events[-1][0] == "error"
    assert ("message", "[DONE]") not in events
    assert json.loads(events[0][1])["choices"][0]["delta"]["role"] == "assistant"

    result = assemble_stream((await _one(app(Fault.INVALID_JSON))).content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.tool_calls[0][2])

    result = assemble_stream((await _one(app(Fault.UNKNOWN_TOOL))).content)
    offered = {t["function"]["name"] for t in tools_for("guard")}
    assert result.tool_calls[0][1] not in offered

    result = assemble_stream((await _one(app(Fault.MISSING_ID))).content)
    assert result.tool_calls[0][0] is None
    assert (
        "id"
        not in (await _one(app(Fault.MISSING_ID), stream=False)).json()["choices"][0]["message"][
            "tool_calls"
        ][0]
    )


@pytest.mark.asyncio
async def test_slow_stream_sends_event_by_event() -> None:
    app = OfflineModel(
        village_characters(),
        misbehaviour=Misbehaviour(rate=1.0, kinds=frozenset({Fault.SLOW}), delay_s=0.001),
    )
    body = json.dumps(
        {"model": "guard", "messages": [{"role": "user", "content": "oak"}], "stream": True}
    ).encode()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    await app(scope, receive, send)
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert len(bodies) > 5
    raw = b"".join(m["body"] for m in bodies)
    assert assemble_stream(raw).done


@pytest.mark.asyncio
async def test_argument_faults_skip_text_replies_and_rate_zero_never_fails() -> None:
    only_args = Misbehaviour(rate=1.0, kinds=frozenset({Fault.INVALID_JSON}))
    async with _client(OfflineModel(village_characters(), misbehaviour=only_args)) as client:
        body = {"model": "guard", "messages": [{"role": "user", "content": "let me in"}]}
        response = await client.post("chat/completions", json=body)
        assert response.json()["choices"][0]["message"]["content"].startswith("Not without")
    calm = Misbehaviour(rate=0.0)
    assert await _transcripts(3, calm) == await _transcripts(3)


def test_misbehaviour_spec() -> None:
    assert Misbehaviour.parse("0.25").rate == 0.25
    spec = Misbehaviour.parse("1:http_429, slow")
    assert spec.kinds == {Fault.HTTP_429, Fault.SLOW}
    for bad in ("x", "1.5", "0.1:nope", "-1"):
        with pytest.raises(OfflineConfigError):
            Misbehaviour.parse(bad)


@pytest.mark.asyncio
async def test_bad_requests_are_openai_errors() -> None:
    async with _client(OfflineModel(village_characters())) as client:
        for content, param in (
            (b"{not json", None),
            (b"[]", None),
            (b'{"model":"guard"}', "messages"),
            (b'{"model":"guard","messages":[]}', "messages"),
            (b'{"model":"guard","messages":[3]}', "messages[0]"),
            (b'{"model":"guard","messages":[{"role":"user"}],"tools":{}}', "tools"),
        ):
            response = await client.post("chat/completions", content=content)
            assert response.status_code == 400, content
            error = response.json()["error"]
            assert error["type"] == "invalid_request_error"
            assert error["param"] == param
        assert (await client.get("chat/completions")).status_code == 405
        assert (await client.get("/nowhere")).status_code == 404
        models = (await client.get("models")).json()
        assert [m["id"] for m in models["data"]] == ["guard", "merchant", "villager"]
        # Odd but well-formed input still gets an answer.
        odd = {
            "model": 42,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "oak"}, 7]},
                {"role": "tool", "tool_call_id": None, "content": None},
            ],
            "tools": [{"type": "function"}, 5, {"function": {"name": "x", "parameters": 3}}],
        }
        response = await client.post("chat/completions", json=odd)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"]
