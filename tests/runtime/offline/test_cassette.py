"""Record/replay: a misbehaving offline run recorded and replayed byte for byte, the mismatch
error naming the field, and the transport edge cases (cut bodies, binary bodies, secrets)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from runtime.cassette import (
    CassetteFormatError,
    RecordingTransport,
    ReplayExhausted,
    ReplayMismatch,
    ReplayTransport,
    load_cassette,
)
from runtime.completions import CompletionsClient, CompletionsError, RetryPolicy
from runtime.offline import (
    Misbehaviour,
    OfflineModel,
    endpoint_base_url,
    make_http_client,
    running_offline_model,
)
from tests.runtime.offline._offline_support import play, tools_for, village_characters

SCRIPT = {
    "guard": ['player says: "hi"', 'player says: "oak"', "player waits"],
    "merchant": ['player says: "apple?"', 'player says: "bye"'],
    "villager": ['player says: "follow me"', "a cart passes by"],
}
CHAOS = Misbehaviour(rate=0.4, delay_s=0.0)


class _Tap(httpx2.AsyncBaseTransport):
    """Keeps the raw bytes the client received, to compare record and replay byte for byte."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.bodies: list[tuple[int, bytes]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        self.bodies.append((response.status_code, body))
        return httpx2.Response(response.status_code, headers=response.headers, content=body)


async def _run(spec: str, **kwargs: Any) -> tuple[list[str], list[tuple[int, bytes]]]:
    client = make_http_client(spec, characters=village_characters(), seed=2, **kwargs)
    tap = _Tap(client._transport)
    client._transport = tap
    async with client:
        transcript: list[str] = []
        for i in range(4):
            for model, perceptions in SCRIPT.items():
                transcript += await play(client, model, [f"{p} {i}" for p in perceptions])
    return transcript, tap.bodies


@pytest.mark.asyncio
async def test_record_with_misbehaviour_then_replay_identically(tmp_path: Path) -> None:
    cassette = tmp_path / "run.jsonl"
    recorded, recorded_bytes = await _run("offline", misbehaviour=CHAOS, record=cassette)
    assert any(line.startswith("http 429") for line in recorded)
    assert any(line.startswith("stream error") for line in recorded)
    lines = cassette.read_text().splitlines()
    assert len(lines) == len(recorded_bytes)

    replayed, replayed_bytes = await _run(f"replay:{cassette}")
    assert replayed == recorded
    assert replayed_bytes == recorded_bytes


@pytest.mark.asyncio
async def test_changed_request_names_the_first_differing_field(tmp_path: Path) -> None:
    cassette = tmp_path / "run.jsonl"
    await _run("offline", record=cassette)
    client = make_http_client(f"replay:{cassette}")
    messages = [{"role": "user", "content": 'player says: "hi" 0'}]
    async with client:
        body = {"model": "guard", "messages": messages, "tools": tools_for("guard")}
        ok = await client.post(
            "chat/completions",
            json={**body, "stream": True, "stream_options": {"include_usage": True}},
        )
        assert ok.status_code == 200
        changed = [{"role": "user", "content": 'player says: "hello" 0'}]
        with pytest.raises(ReplayMismatch) as info:
            await client.post(
                "chat/completions",
                json={
                    **body,
                    "messages": changed,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
            )
        assert info.value.field == "body.messages[0].content"
        assert "body.messages[0].content" in str(info.value)
        assert '"player says: \\"hello\\" 0"' in str(info.value)

        fewer_tools = {
            **body,
            "tools": body["tools"][:2],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        with pytest.raises(ReplayMismatch) as info:
            await client.post("chat/completions", json=fewer_tools)
        assert info.value.field == "body.tools[2]"

        with pytest.raises(ReplayMismatch) as info:
            await client.post("other/path", json=body)
        assert "POST /other/path" in str(info.value)


@pytest.mark.asyncio
async def test_identical_requests_replay_in_recorded_order_then_exhaust(tmp_path: Path) -> None:
    answers = iter([429, 200])

    def handler(request: httpx2.Request) -> httpx2.Response:
        status = next(answers)
        return httpx2.Response(
            status, headers={"retry-after": "0", "x-noise": "1"}, text=str(status)
        )

    cassette = tmp_path / "c.jsonl"
    recorder = RecordingTransport(httpx2.MockTransport(handler), cassette, base_path="/v1")
    async with httpx2.AsyncClient(transport=recorder, base_url="https://api.example/v1") as c:
        assert [(await c.post("chat/completions", json={"a": 1})).status_code for _ in "xy"] == [
            429,
            200,
        ]
    [first, _second] = load_cassette(cassette)
    assert first.request == {"method": "POST", "path": "/chat/completions", "body": {"a": 1}}
    assert dict(first.headers) == {"retry-after": "0", "content-type": "text/plain; charset=utf-8"}

    replay = ReplayTransport(cassette, base_path="/elsewhere")
    async with httpx2.AsyncClient(transport=replay, base_url="http://x/elsewhere") as c:
        got = [await c.post("chat/completions", json={"a": 1}) for _ in "xy"]
        assert [(r.status_code, r.text) for r in got] == [(429, "429"), (200, "200")]
        assert got[0].headers["retry-after"] == "0"
        with pytest.raises(ReplayExhausted, match="recorded 2 time"):
            await c.post("chat/completions", json={"a": 1})


@pytest.mark.asyncio
async def test_no_keys_in_cassettes(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    client = make_http_client(
        "offline",
        characters=village_characters(),
        record=cassette,
        headers={"Authorization": "Bearer sk-very-secret"},
    )
    async with client:
        body = {
            "model": "guard",
            "messages": [{"role": "user", "content": "hi"}],
            "api_key": "sk-very-secret",
        }
        await client.post("chat/completions?api_key=sk-very-secret&api-version=2", json=body)
    text = cassette.read_text()
    assert "sk-very-secret" not in text
    assert load_cassette(cassette)[0].request["path"] == "/chat/completions?api-version=2"


class _CutStream(httpx2.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'data: {"partial": true}\n\n'
        raise httpx2.ReadError("connection reset by peer")

    async def aclose(self) -> None:
        return None


class _CutTransport(httpx2.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, stream=_CutStream()
        )


@pytest.mark.asyncio
async def test_cut_stream_and_binary_body_replay_the_same(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    async with httpx2.AsyncClient(transport=RecordingTransport(_CutTransport(), cassette)) as c:
        with pytest.raises(httpx2.ReadError):
            await c.post("http://h/cut", json={})
    binary = bytes(range(256))
    inner = httpx2.MockTransport(lambda r: httpx2.Response(200, content=binary))
    async with httpx2.AsyncClient(transport=RecordingTransport(inner, cassette)) as c:
        assert (await c.get("http://h/bin")).content == binary

    async with httpx2.AsyncClient(transport=ReplayTransport(cassette)) as c:
        async with c.stream("POST", "http://h/cut", json={}) as response:
            received: list[bytes] = []

            async def read_all() -> None:
                async for chunk in response.aiter_raw():
                    received.append(chunk)

            with pytest.raises(httpx2.ReadError, match="reset"):
                await read_all()
        assert b"".join(received) == b'data: {"partial": true}\n\n'
        assert (await c.get("http://h/bin")).content == binary


def test_bad_cassettes_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"key": "k", "request": {}, "response": {"status": 200, "text": ""}})
    for bad in (
        "{nope",
        "[]",
        '{"key": 1, "request": {}}',
        '{"key": "k", "request": {}}',
        '{"key":"k","request":{},"response":{"status":200,"base64":"!!"}}',
    ):
        path.write_text(f"{good}\n\n{bad}\n")
        with pytest.raises(CassetteFormatError, match=r"bad\.jsonl:3: "):
            ReplayTransport(path)
    with pytest.raises(CassetteFormatError, match="cannot read"):
        ReplayTransport(tmp_path / "missing.jsonl")


@pytest.mark.asyncio
async def test_record_a_loopback_server_replay_in_process(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    app = OfflineModel(village_characters(), seed=9)
    async with running_offline_model(app) as base_url:
        client = make_http_client(base_url, record=cassette)
        async with client:
            live = await play(client, "guard", ['player says: "oak"', "hello"])
    async with make_http_client(f"replay:{cassette.name}", root=tmp_path) as client:
        assert await play(client, "guard", ['player says: "oak"', "hello"]) == live


async def _client_run(spec: str, **kwargs: Any) -> list[Any]:
    """The same script through helper-2's CompletionsClient (the runtime's real path)."""
    http = make_http_client(spec, characters=village_characters(), seed=5, **kwargs)

    async def no_sleep(_: float) -> None:
        return None

    client = CompletionsClient(
        endpoint_base_url(spec),
        "sk-test-key",
        http=http,
        retry=RetryPolicy(max_retries=6),
        sleep=no_sleep,
        new_id=lambda: "call_assigned",
    )
    out: list[Any] = []
    async with http:
        for model, perceptions in SCRIPT.items():
            tools = tools_for(model)
            for perception in perceptions:
                for i in range(3):
                    body = {
                        "model": model,
                        "messages": [{"role": "user", "content": f"{perception} {i}"}],
                        "tools": tools,
                    }
                    try:
                        out.append((await client.complete(body)).to_dict())
                    except CompletionsError as exc:
                        out.append(f"{type(exc).__name__}: {exc}")
    return out


@pytest.mark.asyncio
async def test_completions_client_record_and_replay(tmp_path: Path) -> None:
    cassette = tmp_path / "client.jsonl"
    recorded = await _client_run("offline", misbehaviour=CHAOS, record=cassette)
    assert "sk-test-key" not in cassette.read_text()
    assert recorded == await _client_run(f"replay:{cassette}")
