"""Streaming over a real loopback server (uvicorn): text reaches the client while the upstream
model is still generating, and a client that goes away cancels its turn.

No timing assertions: the upstream model pauses after its first word until the test releases
it, so "the first word arrived before the upstream finished" is an ordering fact. A stream that
were buffered would never deliver that word, and the bounded wait would fail the test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx2
import openai
import pytest

from runtime.endpoint import create_app, running_http
from runtime.project import Project
from runtime.runtime import Runtime
from tests.runtime.endpoint._endpoint_support import ScriptedModel, Step

BOUND_S = 10.0


async def _data_lines(response: httpx2.Response) -> AsyncIterator[str]:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield line[len("data: ") :]


@pytest.mark.asyncio
async def test_first_content_arrives_before_the_upstream_finishes(project: Project) -> None:
    gate = asyncio.Event()
    model = ScriptedModel([Step("Halt! Who goes there?", gate=gate)])
    async with (
        Runtime(project, model_client=model.factory) as runtime,
        running_http(create_app(project, runtime, environ={})) as base,
        httpx2.AsyncClient(base_url=base, timeout=BOUND_S) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "guard", "messages": [{"role": "user", "content": "hi"}]},
        ) as response,
    ):
        assert response.status_code == 200
        lines = _data_lines(response)
        async with asyncio.timeout(BOUND_S):
            role = json.loads(await anext(lines))
            first = json.loads(await anext(lines))
        assert role["choices"][0]["delta"]["role"] == "assistant"
        assert first["choices"][0]["delta"] == {"content": "Halt!"}
        # The upstream stream is still open, parked after its first word.
        assert model.waiting.is_set()
        assert model.finished == 0
        gate.set()
        rest = [data async for data in lines]
    assert model.finished == 1
    assert rest[-1] == "[DONE]"
    text = "".join(json.loads(d)["choices"][0]["delta"].get("content", "") for d in rest[:-1])
    assert text == " Who goes there?"


@pytest.mark.asyncio
async def test_sdk_streams_incrementally_over_loopback(project: Project) -> None:
    gate = asyncio.Event()
    model = ScriptedModel([Step("Halt! Who goes there?", gate=gate)])
    async with (
        Runtime(project, model_client=model.factory) as runtime,
        running_http(create_app(project, runtime, environ={"NPC_API_KEYS": "k"})) as base,
        openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0) as sdk,
    ):
        stream = await sdk.chat.completions.create(
            model="guard", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = aiter(stream)
        async with asyncio.timeout(BOUND_S):
            await anext(chunks)  # the role chunk
            first = await anext(chunks)
        assert first.choices[0].delta.content == "Halt!"
        assert model.finished == 0
        gate.set()
        rest = [chunk async for chunk in chunks]
    assert "".join(c.choices[0].delta.content or "" for c in rest) == " Who goes there?"
    assert rest[-1].choices[0].finish_reason == "stop"


@pytest.mark.asyncio
async def test_a_client_disconnect_cancels_the_turn(project: Project) -> None:
    gate = asyncio.Event()  # never set: the upstream would wait forever
    model = ScriptedModel([Step("Halt! Who goes there?", gate=gate)])
    async with (
        Runtime(project, model_client=model.factory) as runtime,
        running_http(create_app(project, runtime, environ={})) as base,
    ):
        async with (
            httpx2.AsyncClient(base_url=base, timeout=BOUND_S) as client,
            client.stream(
                "POST",
                "/v1/chat/completions",
                json={"model": "guard", "messages": [{"role": "user", "content": "hi"}]},
            ) as response,
        ):
            lines = _data_lines(response)
            async with asyncio.timeout(BOUND_S):
                await anext(lines)
                await anext(lines)
        # The connection is closed: the turn, and with it the upstream stream, is cancelled.
        async with asyncio.timeout(BOUND_S):
            await model.cancelled.wait()
    assert model.finished == 0


@pytest.mark.asyncio
async def test_non_streaming_over_loopback(project: Project) -> None:
    async with (
        Runtime(project) as runtime,
        running_http(create_app(project, runtime, environ={})) as base,
        httpx2.AsyncClient(base_url=base, timeout=BOUND_S) as client,
    ):
        response = await client.post(
            "/v1/chat/completions",
            json={
                "model": "guard",
                "stream": False,
                "messages": [{"role": "user", "content": "let me through"}],
            },
        )
        health = await client.get("/healthz")
    assert response.json()["choices"][0]["message"]["content"] == (
        "Not without the password, stranger."
    )
    assert health.json()["status"] == "ok"
