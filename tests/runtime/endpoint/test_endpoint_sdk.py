"""The character endpoint driven by the official openai SDK: what every client will do."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall
from starlette.applications import Starlette

from tests.runtime.endpoint._endpoint_support import sdk_client

OAK: list[Any] = [{"role": "user", "content": "oak"}]
REFUSED = "Not without the password, stranger."


@pytest.mark.asyncio
async def test_create_non_streaming_plain_text(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="guard",
        messages=[{"role": "user", "content": "Please open the gate."}],
        stream=False,
    )
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "guard"
    assert completion.system_fingerprint is None
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.logprobs is None
    assert choice.message.role == "assistant"
    assert choice.message.content == REFUSED
    assert choice.message.refusal is None
    assert choice.message.tool_calls is None
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@pytest.mark.asyncio
async def test_create_streaming_is_the_default_shape(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="guard",
        messages=[{"role": "user", "content": "let me in"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REFUSED
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


@pytest.mark.asyncio
async def test_stream_helper_accumulates_the_answer(sdk: openai.AsyncOpenAI) -> None:
    async with sdk.chat.completions.stream(
        model="guard", messages=[{"role": "user", "content": "open the gate"}]
    ) as stream:
        deltas = [event.delta async for event in stream if event.type == "content.delta"]
        final = await stream.get_final_completion()
    assert len(deltas) > 1, "the text should arrive in several deltas"
    assert "".join(deltas) == REFUSED
    assert final.choices[0].message.content == REFUSED
    assert final.choices[0].finish_reason == "stop"


@pytest.mark.asyncio
async def test_tool_call_round_trip_non_streaming(sdk: openai.AsyncOpenAI) -> None:
    first = await sdk.chat.completions.create(model="guard", messages=OAK, stream=False)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Oak it is. Stand back."
    calls = choice.message.tool_calls
    assert calls is not None
    assert len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.function.name == "openGate"
    assert json.loads(call.function.arguments) == {}
    assert call.id

    messages = [
        *OAK,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"open": True})},
    ]
    second = await sdk.chat.completions.create(model="guard", messages=messages, stream=False)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "The gate is open. Go on through."
    assert second.choices[0].message.tool_calls is None


@pytest.mark.asyncio
async def test_tool_call_round_trip_with_the_stream_helper(sdk: openai.AsyncOpenAI) -> None:
    async with sdk.chat.completions.stream(model="guard", messages=OAK) as stream:
        done = [e async for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = await stream.get_final_completion()
    assert [e.name for e in done] == ["openGate"]
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.function.name == "openGate"
    messages = [
        *OAK,
        {
            "role": "assistant",
            "content": message.content,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "openGate", "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": '{"open": true}'},
    ]
    async with sdk.chat.completions.stream(model="guard", messages=messages) as stream:
        answer = await stream.get_final_completion()
    assert answer.choices[0].message.content == "The gate is open. Go on through."


@pytest.mark.asyncio
async def test_models_list(sdk: openai.AsyncOpenAI) -> None:
    page = await sdk.models.list()
    ids = [model.id for model in page.data]
    assert ids == ["guard", "merchant", "villager"]
    assert all(m.object == "model" and m.owned_by == "village" for m in page.data)
    model = await sdk.models.retrieve("merchant")
    assert model.id == "merchant"
    with pytest.raises(openai.NotFoundError):
        await sdk.models.retrieve("dragon")


@pytest.mark.asyncio
async def test_sdk_errors_are_typed(app: Starlette, sdk: openai.AsyncOpenAI) -> None:
    async with sdk_client(app, api_key="wrong") as bad:
        with pytest.raises(openai.AuthenticationError) as auth:
            await bad.chat.completions.create(model="guard", messages=OAK, stream=False)
    assert auth.value.status_code == 401
    assert auth.value.code == "invalid_api_key"

    with pytest.raises(openai.NotFoundError) as missing:
        await sdk.chat.completions.create(model="dragon", messages=OAK, stream=False)
    assert missing.value.code == "model_not_found"

    with pytest.raises(openai.BadRequestError) as bad_request:
        await sdk.chat.completions.create(
            model="guard", messages=OAK, temperature=2.5, stream=False
        )
    assert bad_request.value.param == "temperature"


@pytest.mark.asyncio
async def test_character_id_through_extra_body(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="anything",
        messages=[{"role": "user", "content": "I want to buy an apple"}],
        stream=False,
        extra_body={"character_id": "merchant"},
    )
    assert completion.model == "merchant"
    calls = completion.choices[0].message.tool_calls
    assert calls is not None
    call = calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.function.name == "giveItem"
    assert json.loads(call.function.arguments) == {"item": "apple", "to": "player"}
