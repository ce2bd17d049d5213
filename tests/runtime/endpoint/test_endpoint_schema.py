"""The sans-I/O parts: request parsing (bad input is data: only InvalidRequest ever comes out),
the SSE renderer, and the key check."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from runtime.completions import ToolCall
from runtime.endpoint import ApiKeys, InvalidRequest, NotAuthenticated, parse_request
from runtime.endpoint.render import ARGUMENT_FRAGMENT, ChunkRenderer, Usage

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

FIELDS = [
    "model",
    "character_id",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "frequency_penalty",
    "tools",
    "n",
]
VALID: dict[str, Any] = {
    "model": "guard",
    "messages": [
        {"role": "system", "content": "x"},
        {"role": "user", "content": [{"type": "text", "text": "oak"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "openGate", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ],
    "stream": False,
    "temperature": 1,
    "stop": "x",
    "tools": [{"type": "function", "function": {"name": "look"}}],
}


def check_parses_or_rejects(body: bytes) -> None:
    error: InvalidRequest | None = None
    try:
        parse_request(body)
    except InvalidRequest as exc:
        error = exc
    if error is not None:
        assert error.status == 400
        assert error.message
        assert error.param is None or isinstance(error.param, str)
        text = json.dumps(error.payload())
        assert "pydantic" not in text
        assert "input_value" not in text


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_is_parsed_or_rejected_as_data(value: Any) -> None:
    check_parses_or_rejects(json.dumps(value).encode())


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIELDS), json_values)
def test_any_field_value_is_parsed_or_rejected_as_data(field: str, value: Any) -> None:
    check_parses_or_rejects(json.dumps({**VALID, field: value}).encode())


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 3),
    st.sampled_from(["role", "content", "tool_calls", "tool_call_id"]),
    json_values,
)
def test_any_message_field_is_parsed_or_rejected_as_data(index: int, key: str, value: Any) -> None:
    messages = [dict(m) for m in VALID["messages"]]
    messages[index][key] = value
    check_parses_or_rejects(json.dumps({**VALID, "messages": messages}).encode())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_parsed_or_rejected_as_data(raw: bytes) -> None:
    check_parses_or_rejects(raw)


def test_valid_request_to_wire_form() -> None:
    request = parse_request(json.dumps(VALID).encode())
    assert request.character == "guard"
    assert request.character_field == "model"
    assert request.stream is False
    assert request.sampling == {"temperature": 1.0, "stop": "x"}
    assert request.history() == [
        {"role": "user", "content": "oak"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "openGate", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    [tool] = request.tools
    assert tool.wire() == {
        "type": "function",
        "function": {"name": "look", "parameters": {"type": "object", "properties": {}}},
    }


def test_defaults() -> None:
    request = parse_request(b'{"model": "guard", "messages": [{"role": "user", "content": "x"}]}')
    assert request.stream is True
    assert request.include_usage is False
    assert request.sampling == {}
    assert request.tools == ()


@pytest.mark.asyncio
async def test_random_bodies_through_the_app_never_422_or_500(app: Starlette) -> None:
    values: list[Any] = [None, 0, -1, 3.5, "", "guard", [], [{}], {}, {"role": "user"}, True]
    bodies = [{**VALID, field: value} for field in FIELDS for value in values]
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app),
        base_url="http://npc.test",
        headers={"Authorization": "Bearer other-key"},
    ) as client:
        for body in bodies:
            response = await client.post("/v1/chat/completions", json=body)
            assert response.status_code in (200, 400, 404), (body, response.text)
            if response.status_code != 200:
                assert set(response.json()["error"]) == {"message", "type", "param", "code"}


# -- rendering --------------------------------------------------------------------------------


def test_long_arguments_are_fragmented_and_reassemble() -> None:
    arguments = json.dumps({"text": "a fairly long line " * 10})
    renderer = ChunkRenderer("chatcmpl-x", 1, "guard", include_usage=False)
    events = renderer.tool_calls([ToolCall("call_1", "say", arguments), ToolCall("c2", "x", "")])
    payloads = [json.loads(e.removeprefix(b"data: ")) for e in events]
    deltas = [p["choices"][0]["delta"]["tool_calls"][0] for p in payloads]
    first_calls = [d for d in deltas if "id" in d]
    assert [(d["index"], d["id"], d["function"]["name"]) for d in first_calls] == [
        (0, "call_1", "say"),
        (1, "c2", "x"),
    ]
    fragments = [d["function"]["arguments"] for d in deltas if d["index"] == 0 and "id" not in d]
    assert len(fragments) == -(-len(arguments) // ARGUMENT_FRAGMENT)
    assert "".join(fragments) == arguments


def test_usage_chunk_and_finish() -> None:
    renderer = ChunkRenderer("chatcmpl-x", 5, "m", include_usage=True)
    finish = json.loads(renderer.finish("stop").removeprefix(b"data: "))
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert finish["usage"] is None
    usage = json.loads(renderer.usage(Usage(3, 4)).removeprefix(b"data: "))
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    content = json.loads(renderer.content('say "hi"\n').removeprefix(b"data: "))
    assert content["choices"][0]["delta"] == {"content": 'say "hi"\n'}


# -- keys ---------------------------------------------------------------------------------------


def test_api_keys() -> None:
    keys = ApiKeys.from_env("K", {"K": "a, b"})
    assert not keys.open
    keys.check("Bearer a")
    keys.check("bearer  b")
    for header in (None, "", "Bearer", "Bearer c", "Token a", "Bearer a,b", "Bearer ab"):
        with pytest.raises(NotAuthenticated):
            keys.check(header)
    open_keys = ApiKeys.from_env("K", {})
    assert open_keys.open
    open_keys.check(None)
