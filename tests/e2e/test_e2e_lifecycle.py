"""End to end, what happens around turns: interruption, despawn, a hanging model next to a
healthy NPC, a game that drops its connection mid-call, and a runtime restarted on the same
SQLite database."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bridge import BridgeConfig, Call
from runtime.project import Project, load_project
from runtime.store import MessageRecord, SQLiteStore
from tests.e2e.e2e_world import World, open_world
from tests.runtime.scripted import Reply, call, eventually, make_project, tool_messages


def error_of(message: dict[str, Any]) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(message["content"])["error"]
    return error


def users(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


class Blocked:
    """A game handler that starts and then waits until released or cancelled."""

    def __init__(self, result: Any = None) -> None:
        self.calls: list[Call] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.result = result if result is not None else {"ok": True}

    async def __call__(self, c: Call) -> Any:
        self.calls.append(c)
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return self.result


# -- interruption -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_interruption_while_speaking(world: World) -> None:
    gate = asyncio.Event()
    world.model.script = [
        Reply("Once upon a time there was", gate=gate, gate_at="after_text"),
        Reply("Yes, yes."),
    ]
    game = await world.connect()
    await game.event("t1", "heard", {"speaker": "p", "text": "tell a story"})
    await eventually(lambda: world.speech() == "Once upon a time there was")
    await game.event("t1", "heard", {"speaker": "p", "text": "stop talking"})
    await world.idle(count=2)

    first_stream = world.of("say", "t1")[0].stream
    ends = [(e.stream, e.reason) for e in world.of("say_end", "t1")]
    assert ends[0] == (first_stream, "interrupted")
    assert ends[1][1] == "done"
    second = world.model.requests[1]
    assert users(second) == ['p says: "tell a story"', 'p says: "stop talking"']


@pytest.mark.asyncio
async def test_interruption_while_acting_cancels_the_game_call(world: World) -> None:
    world.model.script = [
        Reply(calls=[call("goToLocation", {"x": 50, "z": 50}, "walk")]),
        Reply("What now?"),
    ]
    game = await world.connect()
    walk = Blocked()
    game.handle("goToLocation", walk)
    await game.event("t1", "heard", {"speaker": "p", "text": "walk far"})
    await asyncio.wait_for(walk.started.wait(), 5)
    await game.event("t1", "heard", {"speaker": "p", "text": "no, stay"})
    await world.idle(count=2)

    await asyncio.wait_for(walk.cancelled.wait(), 5)
    assert [c.id for c in world.of("cancel")] == [walk.calls[0].id]
    second = world.model.requests[1]
    (tool,) = tool_messages(second)
    assert tool["tool_call_id"] == "walk"
    assert error_of(tool)["code"] == "CANCELLED"
    assert users(second) == ['p says: "walk far"', 'p says: "no, stay"']
    assert [m["role"] for m in second["messages"][1:]] == ["user", "assistant", "tool", "user"]


# -- despawn ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_despawn_cancels_the_call_and_the_turn(world: World) -> None:
    world.model.script = [Reply(calls=[call("goToLocation", {"x": 1, "z": 1}, "w")])]
    game = await world.connect()
    walk = Blocked()
    game.handle("goToLocation", walk)
    await game.event("t1", "heard", {"speaker": "p", "text": "go"})
    await asyncio.wait_for(walk.started.wait(), 5)
    session = world.runtime.sessions["t1"]
    await game.despawn("t1")
    await eventually(lambda: "t1" not in world.runtime.sessions)
    await asyncio.wait_for(walk.cancelled.wait(), 5)
    assert [c.id for c in world.of("cancel")] == [walk.calls[0].id]
    assert session.last_result is None or session.last_result.outcome != "done"
    await asyncio.sleep(0.05)
    assert len(world.model.requests) == 1  # the model is not asked again


@pytest.mark.asyncio
async def test_despawn_while_the_model_hangs(world: World) -> None:
    hang = asyncio.Event()
    world.model.script = [Reply("never", gate=hang)]
    game = await world.connect()
    await game.event("t1", "heard", {"speaker": "p", "text": "hello?"})
    await world.model.wait_requests(1)
    await game.despawn("t1")
    await eventually(lambda: "t1" not in world.runtime.sessions)
    # A new NPC with the same id starts afresh and answers at once.
    world.model.script = [Reply("Hi.")]
    await game.spawn("t1", "tester")
    await eventually(lambda: "t1" in world.runtime.sessions)
    await game.event("t1", "heard", {"speaker": "p", "text": "hello"})
    await eventually(lambda: "Hi." in world.speech())


# -- many NPCs --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_one_npc_whose_model_hangs_does_not_delay_another(project: Project) -> None:
    hang = asyncio.Event()

    def script(body: dict[str, Any]) -> Reply:
        # The runtime sends the character id as `model` for the offline base_url.
        if body["model"] == "tester":
            return Reply("never", gate=hang)
        return Reply(
            "Right away.", calls=[call("openGate", {}, "g")] if len(body["messages"]) == 2 else []
        )

    async with open_world(project) as world:
        world.model.script = script
        game = await world.connect(npcs=[("slow", "tester"), ("quick", "helper")])

        async def gate(c: Call) -> str:
            return "open"

        game.handle("openGate", gate)
        await game.event("slow", "heard", {"speaker": "p", "text": "hello"})
        await world.model.wait_requests(1)
        await game.event("quick", "heard", {"speaker": "p", "text": "open the gate"})
        await world.idle("quick")
        # The quick NPC finished a two-step turn while the slow one is still waiting.
        assert world.speech("quick") == "Right away.Right away."
        assert [s.state for s in world.of("status", "slow")] == ["thinking"]
        assert world.runtime.sessions["slow"].activity == "thinking"
        hang.set()
        await world.idle("slow")
        assert world.speech("slow") == "never"


# -- disconnects ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_disconnect_mid_call_then_resume_delivers_the_result(world: World) -> None:
    world.model.script = [
        Reply(calls=[call("goToLocation", {"x": 7, "z": 7}, "w")]),
        Reply("Made it."),
    ]
    game = await world.connect()
    walk = Blocked({"arrived": True})
    game.handle("goToLocation", walk)
    await game.event("t1", "heard", {"speaker": "p", "text": "go"})
    await asyncio.wait_for(walk.started.wait(), 5)
    await game.drop()  # the cable is cut while the NPC walks
    await eventually(lambda: game.connections == 2 and game.connected)
    assert game.welcome is not None
    assert game.welcome.pending == [walk.calls[0].id]
    walk.release.set()  # the game finishes the walk and answers on the new connection
    await world.idle()
    assert tool_messages(world.model.requests[1])[0]["content"] == '{"arrived":true}'
    assert game.executions == 1


@pytest.mark.asyncio
async def test_game_gone_past_the_resume_window_is_disconnected(project: Project) -> None:
    async with open_world(project, bridge=BridgeConfig(port=0, resume_window_s=0.2)) as world:
        world.model.script = [Reply(calls=[call("pickUp", {"item": "key"}, "p")]), Reply("Hm.")]
        game = await world.connect(reconnect=False)
        pick = Blocked()
        game.handle("pickUp", pick)
        await game.event("t1", "heard", {"speaker": "p", "text": "take the key"})
        await asyncio.wait_for(pick.started.wait(), 5)
        await game.drop()
        # The game never comes back: the call's outcome is unknown, and the NPC goes away.
        await eventually(lambda: "t1" not in world.runtime.sessions)
        tools = [
            r.message
            for r in world.store.messages  # type: ignore[attr-defined]
            if r.message["role"] == "tool"
        ]
        assert len(tools) == 1
        error = error_of(tools[0])
        assert error["code"] == "DISCONNECTED"
        assert "outcome unknown" in error["message"]


@pytest.mark.asyncio
async def test_a_new_session_of_the_game_keeps_its_npcs(project: Project) -> None:
    """The game restarts (no resume token) and spawns the same NPC while its old session is
    still in the resume window: when that window ends, the NPC must stay with the new game."""
    async with open_world(project, bridge=BridgeConfig(port=0, resume_window_s=0.2)) as world:
        world.model.script = [Reply("Hello again.")]
        old = await world.connect(reconnect=False)
        old_session = next(iter(world.server.sessions.values()))
        await old.drop()
        new = await world.connect()
        await eventually(lambda: old_session.ended)
        await asyncio.sleep(0.05)  # let session_closed of the old session run
        assert "t1" in world.runtime.sessions
        await new.event("t1", "heard", {"speaker": "p", "text": "are you there?"})
        await eventually(lambda: "Hello again." in world.speech())


# -- persistence --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_restart_resumes_history_from_sqlite(project: Project, tmp_path: Path) -> None:
    db = tmp_path / "npc.sqlite3"
    store = SQLiteStore(db)
    async with open_world(project, store=store) as world:
        world.model.script = [
            Reply(calls=[call("goToLocation", {"x": 1, "z": 2}, "w")]),
            Reply("I remember the well."),
        ]
        game = await world.connect()

        async def go(c: Call) -> str:
            return "at the well"

        game.handle("goToLocation", go)
        await game.event("t1", "heard", {"speaker": "p", "text": "go to the well"})
        await world.idle()
        before = world.model.requests[-1]["messages"][1:]
    await store.close()

    store = SQLiteStore(db)
    async with open_world(project, store=store) as world:
        world.model.script = [Reply("Yes, the well.")]
        game = await world.connect()
        assert world.runtime.sessions["t1"].turn_number == 1
        await game.event("t1", "heard", {"speaker": "p", "text": "where were we?"})
        await world.idle()
        resumed = world.model.requests[0]["messages"][1:]
    await store.close()

    assert resumed[: len(before)] == before
    assert resumed[len(before)] == {"role": "assistant", "content": "I remember the well."}
    assert resumed[-1] == {"role": "user", "content": 'p says: "where were we?"'}
    with sqlite3.connect(db) as conn:
        turns = conn.execute("SELECT turn, outcome FROM turns WHERE npc = 't1'").fetchall()
    assert turns == [(1, "done"), (2, "done")]


@pytest.mark.asyncio
async def test_restart_after_a_crash_mid_call_answers_the_open_call(
    project: Project, tmp_path: Path
) -> None:
    """The runtime was killed while a call ran: the store holds the assistant's tool call but
    no result. A provider rejects such a history, so the resumed NPC must answer it first."""
    db = tmp_path / "npc.sqlite3"
    store = SQLiteStore(db)
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "lost",
                "type": "function",
                "function": {"name": "pickUp", "arguments": '{"item":"key"}'},
            }
        ],
    }
    store.append_message(MessageRecord("t1", "tester", 1, {"role": "user", "content": "take it"}))
    store.append_message(MessageRecord("t1", "tester", 1, assistant))
    async with open_world(project, store=store) as world:
        world.model.script = [Reply("Where was I?")]
        game = await world.connect()
        await game.event("t1", "heard", {"speaker": "p", "text": "hello"})
        await world.idle()
        messages = world.model.requests[0]["messages"][1:]
    await store.close()

    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user"]
    lost = messages[2]
    assert lost["tool_call_id"] == "lost"
    assert error_of(lost)["code"] == "DISCONNECTED"
    with sqlite3.connect(db) as conn:
        roles = [r[0] for r in conn.execute("SELECT role FROM messages ORDER BY id")]
    assert roles == ["user", "assistant", "tool", "user", "assistant"]


@pytest.mark.asyncio
async def test_disconnect_mid_speech_ends_the_stream_interrupted(world: World) -> None:
    gate = asyncio.Event()
    world.model.script = [Reply("I was saying", gate=gate, gate_at="after_text")]
    game = await world.connect()
    await game.event("t1", "heard", {"speaker": "p", "text": "talk"})
    await eventually(lambda: world.speech() == "I was saying")
    stream = world.of("say", "t1")[0].stream
    await game.drop()
    await eventually(lambda: game.connections == 2 and game.connected)
    await eventually(lambda: bool(world.of("say_end", "t1")))
    assert (world.of("say_end", "t1")[0].stream, world.of("say_end", "t1")[0].reason) == (
        stream,
        "interrupted",
    )
    gate.set()  # the model finishes; the NPC ends its turn normally on the new connection
    await world.idle()
    assert world.runtime.sessions["t1"].last_result is not None
    assert world.runtime.sessions["t1"].last_result.outcome == "done"


@pytest.mark.asyncio
async def test_step_limit_over_the_bridge(world: World) -> None:
    # steps_per_turn = 4 in the test project; the model keeps asking to open the gate.
    world.model.script = [Reply(calls=[call("openGate", {})])]
    game = await world.connect()
    opened: list[Call] = []

    async def gate(c: Call) -> str:
        opened.append(c)
        return "already open"

    game.handle("openGate", gate)
    await game.event("t1", "heard", {"speaker": "p", "text": "open it"})
    await world.idle()
    assert len(opened) == 4
    assert len(world.model.requests) == 4
    result = world.runtime.sessions["t1"].last_result
    assert result is not None
    assert result.outcome == "step_limit"


@pytest.mark.asyncio
async def test_a_failing_spawn_does_not_stop_serving_the_game(tmp_path: Path) -> None:
    """The project's prompt template file vanished after the project loaded (load_project
    refuses a missing one) when the first NPC spawns: that spawn fails, but the game's later
    messages are still served."""
    root = tmp_path / "project"
    make_project(root)
    with (root / "npc.toml").open("a", encoding="utf-8") as file:
        file.write('\n[prompt]\ntemplate = "prompt.txt"\n')
    (root / "prompt.txt").write_text("placeholder", encoding="utf-8")
    project = load_project(root)
    (root / "prompt.txt").unlink()
    async with open_world(project) as world:
        world.model.script = [Reply("Hello.")]
        game = await world.connect(npcs=[])
        await game.spawn("t1", "tester")
        await game.spawn("ghost", "no-such-character")
        await asyncio.sleep(0.1)
        assert world.runtime.sessions == {}
        (root / "prompt.txt").write_text("You are $name.", encoding="utf-8")
        await game.spawn("t2", "tester")
        await eventually(lambda: "t2" in world.runtime.sessions)
        await game.event("t2", "heard", {"speaker": "p", "text": "hi"})
        await world.idle("t2")
        assert world.model.requests[0]["messages"][0]["content"] == "You are Tess."
