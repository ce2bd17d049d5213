"""End to end over real loopback sockets: a GameClient game, the bridge server, the Runtime,
the real completions client and a scripted model endpoint. What the model received is
asserted on the request bodies its endpoint recorded."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bridge import Call, GameCallError
from tests.e2e.e2e_world import World
from tests.runtime.scripted import Reply, call, eventually, tool_messages, tool_names


def error_of(message: dict[str, Any]) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(message["content"])["error"]
    return error


@pytest.mark.asyncio
async def test_heard_event_walks_the_npc_and_the_result_reaches_the_model(world: World) -> None:
    world.model.script = [
        Reply("Coming.", calls=[call("goToLocation", {"x": 12, "z": -3}, "walk-1")]),
        Reply("Here I am."),
    ]
    game = await world.connect()
    seen: list[Call] = []

    async def go(c: Call) -> dict[str, Any]:
        seen.append(c)
        return {"arrived": True, "position": [c.args["x"], c.args["z"]]}

    game.handle("goToLocation", go)
    await game.event("t1", "heard", {"speaker": "player", "text": "come to the well"})
    await world.idle()

    assert [(c.npc, c.cap, c.args, c.mode) for c in seen] == [
        ("t1", "goToLocation", {"x": 12, "z": -3}, "call")
    ]
    assert 0 < seen[0].deadline_ms <= 5000
    first, second = world.model.requests
    assert first["messages"][-1] == {"role": "user", "content": 'player says: "come to the well"'}
    assert "goToLocation" in tool_names(first)
    assert tool_messages(second) == [
        {
            "role": "tool",
            "tool_call_id": "walk-1",
            "content": '{"arrived":true,"position":[12,-3]}',
        }
    ]
    # Speech: say deltas then say_end(done), per step; status went through the turn.
    assert world.speech() == "Coming.Here I am."
    ends = world.of("say_end", "t1")
    assert [e.reason for e in ends] == ["done", "done"]
    assert {s.stream for s in world.of("say", "t1")} == {e.stream for e in ends}
    states = [s.state for s in world.of("status", "t1")]
    assert states == ["thinking", "speaking", "acting", "thinking", "speaking", "idle"]


@pytest.mark.asyncio
async def test_fire_mode_is_answered_dispatched_without_waiting(world: World) -> None:
    world.model.script = [Reply(calls=[call("shout", {"text": "Halt!"}, "s")]), Reply("Hm.")]
    game = await world.connect()
    never = asyncio.Event()
    shouted: list[Call] = []

    async def shout(c: Call) -> None:
        shouted.append(c)
        await never.wait()  # the game never finishes; the model is not kept waiting

    game.handle("shout", shout)
    await game.event("t1", "heard", {"speaker": "p", "text": "shout"})
    await world.idle()
    assert [(c.cap, c.mode) for c in shouted] == [("shout", "fire")]
    assert tool_messages(world.model.requests[1]) == [
        {"role": "tool", "tool_call_id": "s", "content": '{"status":"dispatched"}'}
    ]


@pytest.mark.asyncio
async def test_parallel_calls_finishing_in_reverse_keep_the_models_order(world: World) -> None:
    world.model.script = [
        Reply(
            calls=[
                call("goToLocation", {"x": 1, "z": 1}, "a"),
                call("pickUp", {"item": "apple"}, "b"),
                call("openGate", {}, "c"),
            ]
        ),
        Reply("Done."),
    ]
    game = await world.connect()
    order: list[str] = []
    gates = {"goToLocation": asyncio.Event(), "pickUp": asyncio.Event(), "openGate": None}
    after = {"openGate": "pickUp", "pickUp": "goToLocation"}

    async def handler(c: Call) -> dict[str, str]:
        gate = gates[c.cap]
        if gate is not None:
            await gate.wait()
        order.append(c.cap)
        if c.cap in after:
            gate_next = gates[after[c.cap]]
            assert gate_next is not None
            gate_next.set()
        return {"did": c.cap}

    game.default_handler(handler)
    await game.event("t1", "heard", {"speaker": "p", "text": "do everything"})
    await world.idle()
    assert order == ["openGate", "pickUp", "goToLocation"]
    tools = tool_messages(world.model.requests[1])
    assert [m["tool_call_id"] for m in tools] == ["a", "b", "c"]
    assert [json.loads(m["content"]) for m in tools] == [
        {"did": "goToLocation"},
        {"did": "pickUp"},
        {"did": "openGate"},
    ]


@pytest.mark.asyncio
async def test_game_timeout_becomes_a_timeout_tool_message_and_a_cancel(world: World) -> None:
    # slowAction has timeout_s = 0.3 in the test project.
    world.model.script = [Reply(calls=[call("slowAction", {}, "slow")]), Reply("Never mind.")]
    game = await world.connect()
    cancelled = asyncio.Event()
    ids: list[str] = []

    async def slow(c: Call) -> None:
        ids.append(c.id)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    game.handle("slowAction", slow)
    await game.event("t1", "heard", {"speaker": "p", "text": "do the slow thing"})
    await world.idle()
    error = error_of(tool_messages(world.model.requests[1])[0])
    assert error["code"] == "TIMEOUT"
    assert [(c.id, c.reason) for c in world.of("cancel")] == [(ids[0], "timeout")]
    await asyncio.wait_for(cancelled.wait(), 5)


@pytest.mark.asyncio
async def test_game_error_is_passed_to_the_model(world: World) -> None:
    world.model.script = [Reply(calls=[call("openGate", {}, "g")]), Reply("Stuck.")]
    game = await world.connect()

    async def jammed(c: Call) -> None:
        raise GameCallError("JAMMED", "the gate is jammed")

    game.handle("openGate", jammed)
    await game.event("t1", "heard", {"speaker": "p", "text": "open"})
    await world.idle()
    assert error_of(tool_messages(world.model.requests[1])[0]) == {
        "code": "JAMMED",
        "message": "the gate is jammed",
    }


@pytest.mark.asyncio
async def test_invalid_and_unknown_calls_never_reach_the_game(world: World) -> None:
    world.model.script = [
        Reply(calls=[call("goToLocation", {"x": 5000, "z": 0}, "far"), call("fly", {}, "up")]),
        Reply("Fine."),
    ]
    game = await world.connect()
    reached: list[Call] = []

    async def anything(c: Call) -> None:
        reached.append(c)

    game.default_handler(anything)
    await game.event("t1", "heard", {"speaker": "p", "text": "go far"})
    await world.idle()
    far, up = tool_messages(world.model.requests[1])
    assert error_of(far)["code"] == "INVALID_ARGUMENTS"
    assert "x" in error_of(far)["message"]
    assert "goToLocation" in error_of(up)["message"]
    assert reached == []


@pytest.mark.asyncio
async def test_undeclared_capabilities_are_missing_and_not_offered(world: World) -> None:
    world.model.script = [Reply("Hello.")]
    game = await world.connect(capabilities=["goToLocation", "shout"])
    assert game.welcome is not None
    assert sorted(game.welcome.missing) == ["openGate", "pickUp", "slowAction"]
    await game.event("t1", "heard", {"speaker": "p", "text": "hi"})
    await world.idle()
    offered = tool_names(world.model.requests[0])
    assert sorted(offered) == ["goToLocation", "recall", "remember", "shout", "walkHome"]


@pytest.mark.asyncio
async def test_runtime_capability_calls_the_game_through_ctx(world: World) -> None:
    world.model.script = [Reply(calls=[call("walkHome", {}, "home")]), Reply("Home.")]
    game = await world.connect()
    walked: list[dict[str, Any]] = []

    async def go(c: Call) -> str:
        walked.append(c.args)
        return "arrived"

    game.handle("goToLocation", go)
    await game.event("t1", "heard", {"speaker": "p", "text": "go home"})
    await world.idle()
    assert walked == [{"x": 1, "z": 2}]
    assert tool_messages(world.model.requests[1])[0]["content"] == "arrived"


@pytest.mark.asyncio
async def test_non_triggering_events_reach_the_prompt(world: World) -> None:
    world.model.script = [Reply("A wolf!")]
    game = await world.connect()
    await game.event("t1", "saw", {"what": "a wolf"})
    await game.event("t1", "state", {"position": [3, 4], "holding": "torch"})
    await game.event("t1", "heard", {"speaker": "p", "text": "what is that?"})
    await world.idle()
    (request,) = world.model.requests
    system = request["messages"][0]["content"]
    assert "You see a wolf." in system
    assert '"holding": "torch"' in system
    assert [m["role"] for m in request["messages"]] == ["system", "user"]
    await eventually(lambda: len(world.model.requests) == 1)
