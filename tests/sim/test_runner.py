"""The runner against the real bridge server on loopback, with a tiny scripted 'runtime'
that answers perceptions by calling capabilities and streaming speech."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge import BridgeConfig, BridgeServer, Event, Hello
from bridge.errors import CallError
from bridge.session import Session
from sim.errors import SimRunError
from sim.runner import run_world
from sim.scenario import find_scenarios, load_scenario
from sim.transcript import TranscriptWriter, read_transcript
from sim.world import World
from sim.world_file import world_from_dict

VILLAGE = Path(__file__).resolve().parents[2] / "samples" / "village"
TOKEN = "sim-test-token"


class FakeRuntime:
    """Rules: the guard opens the gate for 'oak' (or for anything when gullible), refuses
    otherwise; 'walk' sends the guard far away and cancels the walk; the merchant sells
    apples. Speech is streamed in two deltas like a model would."""

    def __init__(self, *, gullible: bool = False) -> None:
        self.gullible = gullible
        self.events: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        self.outcomes: list[Any] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.ids = itertools.count(1)

    def missing_capabilities(self, hello: Hello) -> list[str]:
        return []

    async def session_opened(self, session: Session) -> None:
        self._spawn(self.serve(session))

    async def session_closed(self, session: Session) -> None:
        return None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def serve(self, session: Session) -> None:
        async for msg in session.incoming():
            if isinstance(msg, Event):
                self.events[msg.npc].append((msg.kind, dict(msg.data)))
                if msg.kind == "heard":
                    speaker, text = msg.data["speaker"], str(msg.data["text"]).lower()
                    self._spawn(self.turn(session, msg.npc, text if speaker == "player" else ""))

    def speak(self, session: Session, npc: str, text: str) -> None:
        stream = f"s{next(self.ids)}"
        session.status(npc, "speaking")
        half = len(text) // 2
        session.say(npc, stream, text[:half])
        session.say(npc, stream, text[half:])
        session.say_end(npc, stream, "done")

    async def turn(self, session: Session, npc: str, text: str) -> None:
        session.status(npc, "thinking")
        await asyncio.sleep(0.01)  # a model takes a moment; lockstep waits for it
        try:
            if not text:
                return  # another NPC spoke: a turn that decides to do nothing
            if npc == "guard" and ("oak" in text or self.gullible):
                self.speak(session, npc, "Oak it is. Stand back.")
                session.status(npc, "acting")
                self.outcomes.append(await session.call(npc, "openGate", {}, timeout_s=5))
            elif npc == "guard" and "walk" in text:
                session.status(npc, "acting")
                call = asyncio.ensure_future(
                    session.call(npc, "goToLocation", {"x": 0, "z": -40}, call_id="walk-1")
                )
                await asyncio.sleep(0.3)
                await session.cancel("walk-1", "changed my mind")
                with contextlib.suppress(CallError):
                    await call
            elif npc == "guard":
                self.speak(session, npc, "Not without the password, stranger.")
            elif npc == "merchant" and "apple" in text:
                session.status(npc, "acting")
                try:
                    await session.call(npc, "giveItem", {"item": "apple", "to": "player"})
                except CallError as exc:
                    self.outcomes.append(exc)
                self.speak(session, npc, "There you go. Two gold, if you please.")
        finally:
            session.status(npc, "idle")


@contextlib.asynccontextmanager
async def bridge(runtime: FakeRuntime) -> AsyncIterator[BridgeServer]:
    async with BridgeServer(BridgeConfig(port=0, token=TOKEN), runtime) as server:
        yield server
    for task in list(runtime.tasks):
        task.cancel()


def _types(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == kind]


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["password", "wrong_password", "merchant"])
async def test_sample_scenarios_pass(name: str, tmp_path: Path) -> None:
    scenario = load_scenario(find_scenarios(VILLAGE)[name])
    runtime = FakeRuntime()
    path = tmp_path / "transcript.jsonl"
    async with bridge(runtime) as server:
        with TranscriptWriter(path) as writer:
            result = await run_world(
                World(scenario.world),
                bridge_url=server.url,
                token=TOKEN,
                transcript=writer,
                scenario=scenario,
            )
    assert [(a.name, a.passed, a.detail) for a in result.failed] == []
    assert result.passed is True
    assert result.stopped == "duration"
    assert result.sim_seconds == pytest.approx(scenario.duration)
    on_disk = read_transcript(path)
    assert [r["type"] for r in on_disk] == [r["type"] for r in result.records]
    assert on_disk[0]["type"] == "run"
    assert on_disk[-1]["type"] == "end"
    assert on_disk[-1]["passed"] is True
    assert _types(on_disk, "assertion")


@pytest.mark.asyncio
async def test_failing_scenario_names_the_assertion(tmp_path: Path) -> None:
    scenario = load_scenario(find_scenarios(VILLAGE)["wrong_password"])
    runtime = FakeRuntime(gullible=True)
    async with bridge(runtime) as server:
        with TranscriptWriter(tmp_path / "t.jsonl") as writer:
            result = await run_world(
                World(scenario.world),
                bridge_url=server.url,
                token=TOKEN,
                transcript=writer,
                scenario=scenario,
            )
    assert result.passed is False
    failed = {a.name: a.detail for a in result.failed}
    assert set(failed) == {"never openGate", "gate_open=false", "said guard ~ 'password'"}
    # Two lines, two gullible openGate calls; the detail says when the first happened.
    assert failed["never openGate"] == "openGate called 2x, first by guard at t=2.0"


@pytest.mark.asyncio
async def test_calls_results_speech_and_npc_hearing_over_the_bridge(tmp_path: Path) -> None:
    world = World(
        world_from_dict(
            {
                "world": {"walk_speed": 1.5},
                "gate": {"x": 0, "z": 40, "key_holders": ["guard"]},
                "prices": {"apple": 2},
                "npc": [
                    {"id": "guard", "x": 0, "z": 38},
                    {"id": "merchant", "x": 4, "z": 38, "holding": ["apple"]},
                ],
                "player": [{"id": "player", "x": 3, "z": 37, "gold": 1}],
                "script": [
                    {"at": 1, "say": "Oak!", "to": "guard"},
                    {"at": 3, "say": "An apple, please.", "to": "merchant"},
                ],
            }
        )
    )
    runtime = FakeRuntime()
    async with bridge(runtime) as server:
        with TranscriptWriter(tmp_path / "t.jsonl") as writer:
            result = await run_world(
                world, bridge_url=server.url, token=TOKEN, transcript=writer, duration=6
            )
    records = result.records
    # The guard's streamed line was assembled and heard by the merchant (NPC to NPC).
    guard_lines = [r["text"] for r in _types(records, "line") if r["npc"] == "guard"]
    assert guard_lines == ["Oak it is. Stand back.", "Not without the password, stranger."]
    assert ("heard", {"speaker": "guard", "text": "Oak it is. Stand back."}) in runtime.events[
        "merchant"
    ]
    # The openGate call went through the bridge and back with the world's answer.
    assert runtime.outcomes[0] == {"open": True, "already_open": False}
    assert result.end_state["gate"]["opened_by"] == "guard"
    (call,) = [r for r in _types(records, "call") if r["cap"] == "openGate"]
    (res,) = [r for r in _types(records, "result") if r["id"] == call["id"]]
    assert res["ok"] is True
    assert res["tool_ms"] >= 0
    # The player cannot pay: the game's error reached the runtime with its code.
    (refusal,) = runtime.outcomes[1:]
    assert refusal.code == "CANNOT_PAY"
    assert world.holding("merchant") == ["apple"]
    states = {r["state"] for r in _types(records, "status")}
    assert {"thinking", "speaking", "acting", "idle"} <= states


@pytest.mark.asyncio
async def test_cancel_interrupts_walk(tmp_path: Path) -> None:
    world = World(
        world_from_dict(
            {
                "npc": [{"id": "guard", "x": 0, "z": 40}],
                "player": [{"id": "player", "x": 0, "z": 36}],
                "script": [{"at": 0.5, "say": "Go for a walk.", "to": "guard"}],
            }
        )
    )
    runtime = FakeRuntime()
    async with bridge(runtime) as server:
        with TranscriptWriter(tmp_path / "t.jsonl") as writer:
            result = await run_world(
                world,
                bridge_url=server.url,
                token=TOKEN,
                transcript=writer,
                duration=3,
                pace="realtime",
                time_scale=5,
            )
    (cancel,) = _types(result.records, "cancel")
    assert cancel["id"] == "walk-1"
    (res,) = [r for r in _types(result.records, "result") if r["id"] == "walk-1"]
    assert res["error"]["code"] == "CANCELLED"
    x, z = world.position("guard")
    assert x == 0
    assert -40 < z < 40  # stopped on the way


@pytest.mark.asyncio
async def test_refused_connection_is_a_sim_error(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    async with bridge(runtime) as server:
        with TranscriptWriter(None) as writer, pytest.raises(SimRunError, match="cannot connect"):
            await run_world(
                World(world_from_dict({})),
                bridge_url=server.url,
                token="wrong",
                transcript=writer,
                duration=1,
            )


@pytest.mark.asyncio
async def test_until_and_idle_stop(tmp_path: Path) -> None:
    scenario = load_scenario(find_scenarios(VILLAGE)["password"])
    runtime = FakeRuntime()
    seen: list[Any] = []
    stop: Callable[[World], bool] = lambda w: w.t >= 1.0  # noqa: E731
    async with bridge(runtime) as server:
        with TranscriptWriter(None) as writer:
            early = await run_world(
                World(scenario.world),
                bridge_url=server.url,
                token=TOKEN,
                transcript=writer,
                until=stop,
                progress=seen.append,
            )
        with TranscriptWriter(None) as writer:
            idle = await run_world(
                World(scenario.world),
                bridge_url=server.url,
                token=TOKEN,
                transcript=writer,
                stop_when_idle=5,
            )
    assert early.stopped == "until"
    assert early.sim_seconds == pytest.approx(1.0)
    assert seen
    assert seen[-1].t == pytest.approx(1.0)
    assert idle.stopped == "idle"
    assert idle.sim_seconds < 20
    assert idle.end_state["gate"]["open"] is True


@pytest.mark.asyncio
async def test_a_thousand_npcs_spawn_beyond_the_hello_frame(tmp_path: Path) -> None:
    world = World(
        world_from_dict(
            {
                "world": {"bounds": {"min_x": -1000, "max_x": 1000, "min_z": -1000, "max_z": 1000}},
                "npc": [
                    {
                        "id": f"villager-number-{i:04d}",
                        "character": "villager",
                        "x": i // 2,
                        "z": i % 2,
                    }
                    for i in range(1500)
                ],
            }
        )
    )
    runtime = FakeRuntime()
    config = BridgeConfig(port=0, token=TOKEN, events_per_s=100_000, event_burst=100_000)
    async with BridgeServer(config, runtime) as server:
        with TranscriptWriter(None) as writer:
            result = await run_world(
                world, bridge_url=server.url, token=TOKEN, transcript=writer, duration=0.2
            )
        (session,) = server.sessions.values()
        assert len(session.npcs) == 1500
    assert result.stopped == "duration"
    assert not _types(result.records, "error")
