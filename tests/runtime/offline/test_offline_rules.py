"""Designer rules end to end at the HTTP level, and the turn-ending acknowledgement."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest

from runtime.offline import (
    OFFLINE_BASE_URL,
    OfflineCharacter,
    OfflineConfigError,
    OfflineModel,
    OfflineRule,
    running_offline_model,
)
from tests.runtime.offline._offline_support import (
    assemble_stream,
    play,
    tools_for,
    village_characters,
)


def _client(app: OfflineModel) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url=OFFLINE_BASE_URL)


async def _ask(
    client: httpx2.AsyncClient, model: str, messages: list[dict[str, Any]], **extra: Any
) -> Any:
    body = {"model": model, "messages": messages, "stream": True, **extra}
    response = await client.post("chat/completions", json=body)
    assert response.status_code == 200
    return assemble_stream(response.content)


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", [0, 1, 2, 99])
async def test_guard_opens_the_gate_for_the_password(seed: int) -> None:
    async with _client(OfflineModel(village_characters(), seed=seed)) as client:
        transcript = await play(client, "guard", ['player says: "oak"'])
    assert transcript == [
        'user: player says: "oak"',
        "say: Oak it is. Stand back.",
        'call: openGate {} -> {"ok": true}',
        "say: The gate is open. Go on through.",
    ]


@pytest.mark.asyncio
async def test_guard_rule_over_a_loopback_server_with_the_openai_sdk() -> None:
    tools: Any = tools_for("guard")
    app = OfflineModel(village_characters())
    async with running_offline_model(app) as base_url, httpx2.AsyncClient() as http:
        sdk = openai.AsyncOpenAI(api_key="unused", base_url=base_url, http_client=http)
        messages: list[Any] = [{"role": "user", "content": 'player says: "Oak!"'}]
        first = await sdk.chat.completions.create(
            model="guard", messages=messages, tools=tools, stream=False
        )
        message = first.choices[0].message
        assert message.content == "Oak it is. Stand back."
        assert message.tool_calls is not None
        call = message.tool_calls[0]
        assert call.function.name == "openGate"  # type: ignore[union-attr]
        messages.append(message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"ok":true}'})
        stream = await sdk.chat.completions.create(
            model="guard", messages=messages, tools=tools, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "The gate is open. Go on through."
        models = await sdk.models.list()
        assert sorted(m.id for m in models.data) == ["guard", "merchant", "villager"]


@pytest.mark.asyncio
async def test_rules_match_whole_words_case_insensitively() -> None:
    async with _client(OfflineModel(village_characters())) as client:
        tools = tools_for("guard")
        for text in ("OAK", "the word is oak.", "'oak'"):
            result = await _ask(client, "guard", [{"role": "user", "content": text}], tools=tools)
            assert [c[1] for c in result.tool_calls] == ["openGate"], text
        # "oaken" and "cloak" contain the letters, not the word: no rule, so no rule line.
        for text in ("an oaken door", "my cloak"):
            result = await _ask(client, "guard", [{"role": "user", "content": text}], tools=tools)
            assert result.content != "Oak it is. Stand back."
        result = await _ask(
            client, "guard", [{"role": "user", "content": "please LET ME IN"}], tools=tools
        )
        assert result.content == "Not without the password, stranger."
        assert result.tool_calls == []


@pytest.mark.asyncio
async def test_rule_call_needs_the_tool_in_the_request() -> None:
    async with _client(OfflineModel(village_characters())) as client:
        without = [t for t in tools_for("guard") if t["function"]["name"] != "openGate"]
        result = await _ask(client, "guard", [{"role": "user", "content": "oak"}], tools=without)
    assert result.content == "Oak it is. Stand back."
    assert result.tool_calls == []
    assert result.finish_reason == "stop"


@pytest.mark.asyncio
async def test_failed_rule_call_reports_the_error_not_the_success_line() -> None:
    messages: list[dict[str, Any]] = [
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
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": json.dumps({"error": {"code": "TIMEOUT", "message": "the gate is stuck"}}),
        },
    ]
    async with _client(OfflineModel(village_characters())) as client:
        result = await _ask(client, "guard", messages, tools=tools_for("guard"))
    assert result.content == "That did not work: openGate failed (the gate is stuck)."
    assert result.tool_calls == []


@pytest.mark.asyncio
async def test_after_any_tool_result_the_turn_ends_with_one_sentence() -> None:
    async with _client(OfflineModel(village_characters(), seed=5)) as client:
        for character in ("guard", "merchant", "villager", "unknown-model"):
            for i in range(25):
                transcript = await play(client, character, [f"player says: hello number {i}"])
                calls = [line for line in transcript if line.startswith("call:")]
                assert len(calls) <= 1, transcript
                if calls:
                    assert transcript[-1].startswith("say: "), transcript
                    assert transcript[-1].count(". ") == 0, "one sentence"


@pytest.mark.asyncio
async def test_merchant_and_villager_rules() -> None:
    async with _client(OfflineModel(village_characters())) as client:
        merchant = await play(client, "merchant", ['player says: "can I buy an apple?"'])
        villager = await play(client, "villager", ['player says: "Follow me!"'])
    assert merchant[1:] == [
        "say: An apple? Fresh from the orchard.",
        'call: giveItem {"item":"apple","to":"player"} -> {"ok": true}',
        "say: There you go. Two gold, if you please.",
    ]
    assert villager[1:] == [
        "say: Right behind you!",
        'call: follow {"target":"player"} -> {"ok": true}',
        "say: Where are we going next?",
    ]


def test_rule_validation() -> None:
    with pytest.raises(OfflineConfigError):
        OfflineRule(when=[])
    with pytest.raises(OfflineConfigError):
        OfflineRule(when="x")
    with pytest.raises(OfflineConfigError):
        OfflineRule(when="x", say="y", after_result="z")
    with pytest.raises(OfflineConfigError):
        OfflineRule(when="x", call="bad name")
    rule = OfflineRule(when="what?", say="this")
    assert rule.matches("So, WHAT? tell me")
    assert not rule.matches("whatever")
    assert OfflineCharacter("a", "A", rules=[rule]).first_rule("what?") is rule


@pytest.mark.asyncio
async def test_tool_choice_none_and_forced() -> None:
    async with _client(OfflineModel(village_characters())) as client:
        tools = tools_for("guard")
        for i in range(10):
            messages = [{"role": "user", "content": f"hi {i}"}]
            none = await _ask(client, "guard", messages, tools=tools, tool_choice="none")
            assert none.tool_calls == []
            assert none.content
            forced = await _ask(
                client,
                "guard",
                messages,
                tools=tools,
                tool_choice={"type": "function", "function": {"name": "wait"}},
            )
            assert [c[1] for c in forced.tool_calls] == ["wait"]
            required = await _ask(client, "guard", messages, tools=tools, tool_choice="required")
            assert len(required.tool_calls) == 1
