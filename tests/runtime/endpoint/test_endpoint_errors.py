"""Every error status of the character endpoint, in OpenAI's shape, and never a 422."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx2
import openai
import pytest
from starlette.applications import Starlette

from runtime.completions import ProviderError
from runtime.endpoint import create_app
from runtime.offline import Fault, Misbehaviour
from runtime.project import Project
from runtime.runtime import Runtime
from tests.runtime.endpoint._endpoint_support import (
    KEY,
    ScriptedModel,
    Step,
    offline_upstream,
    sdk_client,
    sse_events,
)

URL = "/v1/chat/completions"
OK_MESSAGES: list[Any] = [{"role": "user", "content": "let me in"}]
LEAKS = ("pydantic", "errors.pydantic.dev", "input_value", "Traceback", "starlette", "loc")


def assert_error(
    response: httpx2.Response, status: int, code: str | None, param: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert list(error) == ["message", "type", "param", "code"]
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["code"] == code
    assert error["param"] == param
    for leak in LEAKS:
        assert leak not in response.text
    return dict(error)


# -- 401 --------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_api_key"),
        ("Bearer", "missing_api_key"),
        ("Basic dGVzdDp0ZXN0", "missing_api_key"),
        ("Bearer wrong-key", "invalid_api_key"),
        (f"Bearer {KEY}x", "invalid_api_key"),
        (f"Bearer {KEY[:-1]}", "invalid_api_key"),
    ],
)
async def test_401_missing_or_wrong_key(app: Starlette, header: str | None, code: str) -> None:
    headers = {"Authorization": header} if header is not None else {}
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app), base_url="http://npc.test"
    ) as client:
        response = await client.post(
            URL, json={"model": "guard", "messages": OK_MESSAGES}, headers=headers
        )
    error = assert_error(response, 401, code)
    assert error["type"] == "invalid_request_error"
    assert response.headers["www-authenticate"] == "Bearer"
    assert KEY not in response.text


@pytest.mark.asyncio
async def test_every_configured_key_works(project: Project, runtime: Runtime) -> None:
    app = create_app(project, runtime, environ={"NPC_API_KEYS": " first ,second,, "})
    for key in ("first", "second"):
        async with sdk_client(app, api_key=key) as sdk:
            page = await sdk.models.list()
        assert len(page.data) == 3
    async with sdk_client(app, api_key="first,second") as sdk:
        with pytest.raises(openai.AuthenticationError):
            await sdk.models.list()


@pytest.mark.asyncio
@pytest.mark.parametrize("value", [None, "", " , "])
async def test_no_keys_configured_means_open_and_a_warning(
    project: Project, runtime: Runtime, caplog: pytest.LogCaptureFixture, value: str | None
) -> None:
    environ = {} if value is None else {"NPC_API_KEYS": value}
    with caplog.at_level(logging.WARNING, logger="runtime.endpoint"):
        app = create_app(project, runtime, environ=environ)
    assert any(
        "OPEN" in r.getMessage() and "NPC_API_KEYS" in r.getMessage() for r in caplog.records
    )
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app), base_url="http://npc.test"
    ) as client:
        response = await client.post(
            URL, json={"model": "guard", "messages": OK_MESSAGES, "stream": False}
        )
    assert response.status_code == 200


def test_keys_configured_means_no_warning(
    project: Project, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="runtime.endpoint"):
        create_app(project, runtime, environ={"NPC_API_KEYS": "k"})
    assert not caplog.records


# -- 404 / 405 / 413 ----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "dragon"}, "model"),
        ({"model": "guard", "character_id": "dragon"}, "character_id"),
        ({"character_id": "Guard"}, "character_id"),
    ],
)
async def test_404_unknown_character(
    http: httpx2.AsyncClient, body: dict[str, Any], param: str
) -> None:
    response = await http.post(URL, json={**body, "messages": OK_MESSAGES})
    assert_error(response, 404, "model_not_found", param)


@pytest.mark.asyncio
async def test_404_unknown_path_and_405_wrong_method(http: httpx2.AsyncClient) -> None:
    assert_error(await http.get("/v1/completions"), 404, None)
    response = await http.get(URL)
    assert_error(response, 405, None)
    assert response.headers["allow"] == "POST"
    assert_error(await http.post("/v1/models"), 405, None)


@pytest.mark.asyncio
async def test_413_body_too_large(http: httpx2.AsyncClient, project: Project) -> None:
    limit = project.config.http.max_body_bytes
    big = {"model": "guard", "messages": [{"role": "user", "content": "x" * limit}]}
    assert_error(await http.post(URL, json=big), 413, "request_too_large")

    async def chunks() -> Any:  # no Content-Length: the limit applies while reading
        for _ in range(limit // 1024 + 2):
            yield b" " * 1024

    response = await http.post(URL, content=chunks())
    assert_error(response, 413, "request_too_large")


# -- 400 ----------------------------------------------------------------------------------------


BAD_BODIES: list[tuple[Any, str | None, str | None]] = [
    ({"model": "guard"}, "messages", "missing_required_parameter"),
    ({"messages": OK_MESSAGES}, "model", "missing_required_parameter"),
    ({"model": "guard", "messages": []}, "messages", "invalid_value"),
    ({"model": "guard", "messages": "hi"}, "messages", "invalid_type"),
    ({"model": 7, "messages": OK_MESSAGES}, "model", "invalid_type"),
    ({"model": "guard", "messages": [{"role": "system", "content": "x"}]}, "messages", None),
    ({"model": "guard", "messages": [{"content": "x"}]}, "messages[0].role", "invalid_value"),
    ({"model": "guard", "messages": [{"role": "bot", "content": "x"}]}, "messages[0].role", None),
    ({"model": "guard", "messages": [{"role": "user"}]}, "messages[0].content", None),
    ({"model": "guard", "messages": [{"role": "user", "content": 5}]}, "messages[0].content", None),
    (
        {"model": "guard", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        "messages[0].content[0].type",
        "invalid_value",
    ),
    (
        {"model": "guard", "messages": [{"role": "tool", "tool_call_id": "c1", "content": "x"}]},
        "messages[0].tool_call_id",
        "invalid_value",
    ),
    (
        {
            "model": "guard",
            "messages": [
                *OK_MESSAGES,
                {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "x"}}]},
            ],
        },
        "messages[1].tool_calls[0].function.arguments",
        "missing_required_parameter",
    ),
    ({"model": "guard", "messages": OK_MESSAGES, "stream": "yes"}, "stream", "invalid_type"),
    ({"model": "guard", "messages": OK_MESSAGES, "temperature": 2.5}, "temperature", None),
    ({"model": "guard", "messages": OK_MESSAGES, "temperature": -0.1}, "temperature", None),
    ({"model": "guard", "messages": OK_MESSAGES, "temperature": "1"}, "temperature", None),
    ({"model": "guard", "messages": OK_MESSAGES, "top_p": 1.5}, "top_p", "invalid_value"),
    ({"model": "guard", "messages": OK_MESSAGES, "max_tokens": 0}, "max_tokens", None),
    ({"model": "guard", "messages": OK_MESSAGES, "max_tokens": 1.5}, "max_tokens", None),
    (
        {"model": "guard", "messages": OK_MESSAGES, "frequency_penalty": 3},
        "frequency_penalty",
        None,
    ),
    ({"model": "guard", "messages": OK_MESSAGES, "stop": 5}, "stop", "invalid_type"),
    ({"model": "guard", "messages": OK_MESSAGES, "stop": ["a"] * 5}, "stop", "invalid_value"),
    ({"model": "guard", "messages": OK_MESSAGES, "stop": ["a", 1]}, "stop[1]", "invalid_type"),
    ({"model": "guard", "messages": OK_MESSAGES, "n": 2}, "n", "invalid_value"),
    (
        {"model": "guard", "messages": OK_MESSAGES, "stream_options": {"include_usage": 1}},
        "stream_options.include_usage",
        "invalid_type",
    ),
    ({"model": "guard", "messages": OK_MESSAGES, "tools": {}}, "tools", "invalid_type"),
    (
        {"model": "guard", "messages": OK_MESSAGES, "tools": [{"type": "function"}]},
        "tools[0].function",
        "missing_required_parameter",
    ),
    (
        {
            "model": "guard",
            "messages": OK_MESSAGES,
            "tools": [{"type": "function", "function": {"name": "a b"}}],
        },
        "tools[0].function.name",
        "invalid_value",
    ),
    (
        {
            "model": "guard",
            "messages": OK_MESSAGES,
            "tools": [{"type": "function", "function": {"name": "t"}}] * 2,
        },
        "tools[1].function.name",
        "invalid_value",
    ),
    ([OK_MESSAGES], None, "invalid_json"),
    ("null", None, "invalid_json"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("body", "param", "code"), BAD_BODIES)
async def test_400_names_the_field(
    http: httpx2.AsyncClient, body: Any, param: str | None, code: str | None
) -> None:
    response = await http.post(URL, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert param in error["message"]
    for leak in LEAKS:
        assert leak not in response.text


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b'{"model": "guard",}', b"\xff\xfe", b'{"temperature": NaN}', b"[" * 100_000],
)
async def test_400_unparseable_body(http: httpx2.AsyncClient, raw: bytes) -> None:
    response = await http.post(URL, content=raw, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "invalid_json")


# -- 429 / 502: the upstream model fails --------------------------------------------------------


async def _failing_app(project: Project, fault: Fault, **extra: Any) -> tuple[Runtime, Starlette]:
    misbehaviour = Misbehaviour(rate=1.0, kinds=frozenset({fault}), **extra)
    runtime = Runtime(project, model_client=offline_upstream(project, misbehaviour=misbehaviour))
    return runtime, create_app(project, runtime, environ={})


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
async def test_429_when_the_model_is_rate_limited(project: Project, stream: bool) -> None:
    runtime, app = await _failing_app(project, Fault.HTTP_429, retry_after_s=7)
    async with (
        runtime,
        httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app), base_url="http://npc.test"
        ) as client,
    ):
        response = await client.post(
            URL, json={"model": "guard", "messages": OK_MESSAGES, "stream": stream}
        )
    error = assert_error(response, 429, "rate_limit_exceeded")
    assert error["type"] == "rate_limit_error"
    assert response.headers["retry-after"] == "7"


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
async def test_502_when_the_model_fails(project: Project, stream: bool) -> None:
    runtime, app = await _failing_app(project, Fault.HTTP_500)
    async with runtime, sdk_client(app) as sdk:
        with pytest.raises(openai.APIStatusError) as failed:
            await sdk.chat.completions.create(model="guard", messages=OK_MESSAGES, stream=stream)
    assert failed.value.status_code == 502
    assert failed.value.code == "upstream_error"
    assert "500" in failed.value.message


@pytest.mark.asyncio
async def test_sdk_sees_rate_limit_error(project: Project) -> None:
    runtime, app = await _failing_app(project, Fault.HTTP_429)
    async with runtime, sdk_client(app) as sdk:
        with pytest.raises(openai.RateLimitError):
            await sdk.chat.completions.create(model="guard", messages=OK_MESSAGES, stream=False)


@pytest.mark.asyncio
async def test_failure_after_text_is_an_error_event_in_the_stream(project: Project) -> None:
    def failing() -> Step:
        return Step("Not without the password.", fail=ProviderError("overloaded", "busy"))

    model = ScriptedModel([failing(), failing(), failing()])
    async with Runtime(project, model_client=model.factory) as runtime:
        app = create_app(project, runtime, environ={})
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app), base_url="http://npc.test"
        ) as client:
            response = await client.post(URL, json={"model": "guard", "messages": OK_MESSAGES})
            assert response.status_code == 200
            events = sse_events(response.text)
            assert "[DONE]" not in events
            *chunks, last = (json.loads(e) for e in events)
            assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
            assert text == "Not without the password."
            assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
            assert last["error"]["code"] == "upstream_error"
            assert last["error"]["type"] == "server_error"
            assert "overloaded" in last["error"]["message"]

            # Non-streaming: the status says it.
            response = await client.post(
                URL, json={"model": "guard", "messages": OK_MESSAGES, "stream": False}
            )
            assert_error(response, 502, "upstream_error")

        # The SDK raises on the error event.
        async with sdk_client(app) as sdk:
            stream = await sdk.chat.completions.create(
                model="guard", messages=OK_MESSAGES, stream=True
            )
            with pytest.raises(openai.APIError, match="overloaded"):
                async for _ in stream:
                    pass


@pytest.mark.asyncio
async def test_a_provider_rate_limit_mid_stream_before_any_text_is_a_429(
    project: Project,
) -> None:
    model = ScriptedModel([Step(fail=ProviderError("slow down", "rate_limit_exceeded"))])
    async with Runtime(project, model_client=model.factory) as runtime:
        app = create_app(project, runtime, environ={})
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app), base_url="http://npc.test"
        ) as client:
            response = await client.post(URL, json={"model": "guard", "messages": OK_MESSAGES})
    assert_error(response, 429, "rate_limit_exceeded")
    assert response.headers["retry-after"] == "1"
