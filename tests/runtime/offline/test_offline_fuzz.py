"""Bad input is data: whatever a client sends, the app answers (200, 400 or 500 in OpenAI's
shape) and never raises; and the packages' public API is what `__all__` says."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runtime.cassette
import runtime.offline
from runtime.offline import OfflineModel
from tests.runtime.offline._offline_support import (
    assemble_json,
    assemble_stream,
    tools_for,
    village_characters,
)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
ROLES = st.sampled_from(["user", "assistant", "tool", "system", "developer", "weird"])
CONTENT = st.none() | st.text(max_size=30) | st.just("oak") | JSON
CALL = st.fixed_dictionaries(
    {
        "id": st.none() | st.text(max_size=4),
        "function": JSON
        | st.fixed_dictionaries(
            {"name": st.sampled_from(["openGate", "say", "nope"]), "arguments": st.text(max_size=6)}
        ),
    }
)
MESSAGE = st.fixed_dictionaries(
    {"role": ROLES, "content": CONTENT},
    optional={"tool_calls": st.lists(CALL, max_size=2) | JSON, "tool_call_id": JSON},
)
# Schema-shaped values, well- and ill-formed, to fuzz the argument generator.
SCHEMA = st.recursive(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(
                ["object", "array", "string", "integer", "number", "boolean", "null", "bogus"]
            )
            | st.lists(st.sampled_from(["string", "null", "integer"]), max_size=3)
            | JSON,
            "enum": st.lists(JSON, max_size=3) | JSON,
            "minimum": st.integers(-5, 5) | JSON,
            "maximum": st.integers(-5, 5) | JSON,
            "exclusiveMinimum": st.integers(-5, 5) | st.booleans(),
            "multipleOf": st.sampled_from([0, 0.5, 2, -1]) | JSON,
            "minLength": st.integers(-1, 5) | JSON,
            "maxLength": st.integers(-1, 5) | JSON,
            "minItems": st.integers(-1, 3) | JSON,
            "maxItems": st.integers(-1, 3),
            "required": st.lists(st.sampled_from(["a", "b", "c"]), max_size=3) | JSON,
            "$ref": st.sampled_from(["#", "#/$defs/x", "#/nope", "http://x"]) | JSON,
        },
    ),
    lambda inner: st.fixed_dictionaries(
        {},
        optional={
            "properties": st.dictionaries(st.sampled_from(["a", "b", "text"]), inner, max_size=3),
            "items": inner | JSON,
            "anyOf": st.lists(inner, max_size=3) | JSON,
            "oneOf": st.lists(inner, max_size=3),
            "allOf": st.lists(inner, max_size=3) | JSON,
            "$defs": st.fixed_dictionaries({"x": inner}),
            "type": st.just("object"),
        },
    ),
    max_leaves=12,
)
TOOLS = (
    st.just(tools_for("guard"))
    | st.lists(JSON, max_size=3)
    | st.lists(
        st.fixed_dictionaries(
            {
                "type": st.just("function"),
                "function": st.fixed_dictionaries(
                    {"name": st.just("deep"), "parameters": SCHEMA | JSON}
                ),
            }
        ),
        min_size=1,
        max_size=1,
    )
)
BODY = st.fixed_dictionaries(
    {"messages": st.lists(MESSAGE, min_size=1, max_size=4)},
    optional={
        "model": st.sampled_from(["guard", "merchant", "nobody"]) | JSON,
        "tools": TOOLS,
        "tool_choice": st.sampled_from(["none", "auto", "required"])
        | st.just({"type": "function", "function": {"name": "deep"}})
        | JSON,
        "stream": st.booleans() | JSON,
        "stream_options": JSON | st.just({"include_usage": True}),
        "max_tokens": st.integers(-5, 50) | JSON,
    },
)

APP = OfflineModel(village_characters())


async def _call(raw: bytes) -> tuple[int, bytes]:
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    await APP(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODY | JSON)
def test_any_json_body_gets_an_answer(body: Any) -> None:
    status, raw = asyncio.run(_call(json.dumps(body).encode()))
    assert status in (200, 400), raw
    if status == 400:
        assert json.loads(raw)["error"]["type"] == "invalid_request_error"
    elif isinstance(body, dict) and body.get("stream") is True:
        assert assemble_stream(raw).done
    else:
        assert assemble_json(raw).finish_reason in ("stop", "tool_calls", "length")


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=64))
def test_any_bytes_get_an_answer(raw: bytes) -> None:
    status, _ = asyncio.run(_call(raw))
    assert status in (200, 400)


def test_pathological_inputs() -> None:
    deep_body = b'{"messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert asyncio.run(_call(deep_body))[0] == 400
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(400):
        schema = {"anyOf": [schema]}
    body = {
        "model": "guard",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "deep", "parameters": schema}}],
        "tool_choice": {"type": "function", "function": {"name": "deep"}},
    }
    status, raw = asyncio.run(_call(json.dumps(body).encode()))
    assert status in (200, 400, 500)
    assert "error" in json.loads(raw) or status == 200


@pytest.mark.parametrize("module", [runtime.offline, runtime.cassette])
def test_public_api(module: Any) -> None:
    assert sorted(module.__all__) == sorted(set(module.__all__))
    for name in module.__all__:
        assert hasattr(module, name), name
    assert "OfflineError" in runtime.offline.__all__
    assert issubclass(runtime.offline.OfflineConfigError, runtime.offline.OfflineError)
    for cls in (
        runtime.cassette.CassetteFormatError,
        runtime.cassette.ReplayMismatch,
        runtime.cassette.ReplayExhausted,
    ):
        assert issubclass(cls, runtime.cassette.CassetteError)
