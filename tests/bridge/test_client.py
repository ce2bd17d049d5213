"""GameClient against the real server: handlers, errors, cancel, events, speech, reconnect."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge import (
    Call,
    CallCancelled,
    GameCallError,
    GameClient,
    GameError,
    HandshakeRejected,
    Say,
    SayEnd,
    Status,
    capability_names,
)
from tests.bridge.bridge_helpers import Recorder, eventually, only_session, running

pytestmark = pytest.mark.asyncio


class _Registry:
    def names(self) -> list[str]:
        return ["goToLocation", "openGate"]


class _Cap:
    def __init__(self, name: str) -> None:
        self.name = name


async def test_capability_names_accepts_many_shapes() -> None:
    assert capability_names(_Registry()) == ["goToLocation", "openGate"]
    assert capability_names(["a", {"name": "b"}, _Cap("c")]) == ["a", "b", "c"]
    assert capability_names(None) == []


async def test_call_result_error_and_missing() -> None:
    handler = Recorder(missing=["openGate", "goToLocation"])
    async with running(handler, token="tok") as server:
        game = GameClient(
            server.url, token="tok", capabilities=_Registry(), npcs=[("guard-1", "guard")]
        )

        @game.handle("goToLocation")
        async def go(call: Call) -> dict[str, Any]:
            return {"at": [call.args["x"], call.args["z"]]}

        @game.handle("openGate")
        async def gate(call: Call) -> None:
            raise GameCallError("LOCKED", "the gate is locked")

        welcome = await game.connect()
        assert welcome.missing == []
        try:
            session = handler.opened[0]
            assert session.capabilities == frozenset({"goToLocation", "openGate"})
            assert session.npcs["guard-1"].character == "guard"
            assert await session.call("guard-1", "goToLocation", {"x": 1, "z": 2}) == {"at": [1, 2]}
            with pytest.raises(GameError) as info:
                await session.call("guard-1", "openGate", {})
            assert (info.value.code, info.value.message) == ("LOCKED", "the gate is locked")
        finally:
            await game.close()


async def test_token_in_hello_and_rejection() -> None:
    async with running(token="tok") as server:
        async with GameClient(server.url, token="tok", token_in_hello=True) as game:
            assert game.session is not None
        with pytest.raises(HandshakeRejected) as info:
            await GameClient(server.url, token="bad").connect()
        assert info.value.http_status == 401
        with pytest.raises(HandshakeRejected) as info:
            await GameClient(server.url, token="bad", token_in_hello=True).connect()
        assert info.value.close_code == 4001


async def test_a_hello_the_runtime_refuses_fails_connect_instead_of_retrying() -> None:
    """Too many NPCs for one frame: the runtime closes with 1009 before any welcome. The same
    hello would be refused again, so connect() raises at once rather than retrying forever."""
    npcs = [(f"npc-{i:05d}", "guard") for i in range(4000)]
    async with running() as server:
        game = GameClient(server.url, npcs=npcs)
        with pytest.raises(HandshakeRejected) as info:
            await asyncio.wait_for(game.connect(), 10)
        assert info.value.close_code == 1009
        assert game.connections == 1
        await game.close()


async def test_cancel_stops_the_handler_task() -> None:
    async with running() as server:
        game = GameClient(server.url, npcs=[("guard-1", "guard")])
        started = asyncio.Event()
        cancelled = asyncio.Event()

        @game.handle("walk")
        async def walk(call: Call) -> None:
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        async with game:
            session = await only_session(server)
            task = asyncio.create_task(session.call("guard-1", "walk", {}, call_id="w1"))
            await started.wait()
            assert await session.cancel("w1", "the player left")
            with pytest.raises(CallCancelled):
                await task
            await asyncio.wait_for(cancelled.wait(), 2)


async def test_fire_events_speech_and_progress() -> None:
    async with running() as server:
        game = GameClient(server.url, npcs=[("guard-1", "guard")])
        fired: list[str] = []
        seen: list[Any] = []
        game.on_message(seen.append)

        @game.default_handler
        async def any_cap(call: Call) -> str:
            fired.append(call.cap)
            return "done"

        async with game:
            session = await only_session(server)
            assert await session.call("guard-1", "wave", {}, mode="fire") is None
            await eventually(lambda: fired == ["wave"])
            await game.spawn("guard-2", "guard", {"hp": 3})
            await game.event("guard-2", "heard", {"speaker": "player", "text": "hello"})
            await game.despawn("guard-2")
            kinds = []
            async with asyncio.timeout(2):
                async for msg in session.incoming():
                    kinds.append(msg.t)
                    if len(kinds) == 3:
                        break
            assert kinds == ["spawn", "event", "despawn"]
            assert "guard-2" not in session.npcs
            session.status("guard-1", "speaking")
            session.say("guard-1", "s1", "Hal")
            session.say("guard-1", "s1", "t!")
            session.say_end("guard-1", "s1")
            got: list[Any] = []
            async with asyncio.timeout(2):
                async for reply in game.messages():
                    got.append(reply)
                    if isinstance(reply, SayEnd):
                        break
            assert isinstance(got[0], Status)
            assert "".join(m.text for m in got if isinstance(m, Say)) == "Halt!"
            assert len(seen) == len(got)


async def test_reconnect_resumes_and_answers_pending_from_cache() -> None:
    handler = Recorder()
    async with running(handler) as server:
        game = GameClient(server.url, npcs=[("guard-1", "guard")], backoff_s=(0.01, 0.05))
        release = asyncio.Event()
        runs = 0

        @game.handle("look")
        async def look(call: Call) -> str:
            nonlocal runs
            runs += 1
            await release.wait()
            return "a fox"

        async with game:
            session = await only_session(server)
            first_session = game.session
            task = asyncio.create_task(session.call("guard-1", "look", {}))
            await eventually(lambda: runs == 1)
            await game.drop()  # the connection dies while the handler runs
            await eventually(lambda: game.connections == 2 and game.connected)
            assert game.session == first_session  # resumed, not a new session
            release.set()
            assert await task == "a fox"
            assert runs == 1
            assert len(handler.opened) == 1


async def test_result_finished_while_disconnected_is_sent_after_resume() -> None:
    async with running() as server:
        game = GameClient(server.url, npcs=[("guard-1", "guard")], backoff_s=(0.2, 0.2))
        release = asyncio.Event()

        @game.handle("look")
        async def look(call: Call) -> str:
            await release.wait()
            return "cached"

        async with game:
            session = await only_session(server)
            task = asyncio.create_task(session.call("guard-1", "look", {}))
            await eventually(lambda: bool(game._running))
            await game.drop()
            release.set()  # finishes while disconnected: only the cache has it
            assert await asyncio.wait_for(task, 5) == "cached"
            assert game.executions == 1
