"""The runner: joins a ``World`` to a running bridge as a real game client, over loopback.

One ``GameClient`` connection declares the world's capabilities and spawns every NPC in its
``hello``. Each ``call`` from the runtime becomes a world action; its result goes back when the
world says the action is done (a walk finishes many ticks later). Perceptions go out as bridge
events, speech comes in as ``say`` deltas and is spoken into the world at ``say_end`` (so other
NPCs hear it). Everything is recorded in the transcript as it happens.

Two clocks (``pace``):

- ``"lockstep"`` (default): the next tick waits until the runtime is quiet, i.e. no NPC is
  thinking or speaking, every acting NPC is waiting on a world action, and every NPC that was
  sent a triggering event has reacted (or ``react_timeout_s`` passed). Simulated time then
  measures game time, not model latency, and runs as fast as the runtime allows: a run is
  repeatable with a deterministic model (the offline model, a replayed recording).
- ``"realtime"``: one tick every ``tick / time_scale`` wall seconds, whatever the runtime does
  (how a real game behaves; model latency costs simulated time).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bridge import (
    Call,
    Cancel,
    Error,
    GameCallError,
    GameClient,
    HandshakeRejected,
    Say,
    SayEnd,
    Status,
)
from bridge.codec import encode_map
from bridge.errors import Disconnected
from sim.errors import SimRunError
from sim.scenario import AssertionResult, Scenario, evaluate
from sim.transcript import TranscriptWriter
from sim.world import ActionDone, Output, Perception, World, WorldNote

__all__ = ["WORLD_CAPABILITIES", "SimProgress", "SimResult", "run_world"]

# The capabilities this world implements (declared in hello unless told otherwise).
WORLD_CAPABILITIES = (
    "goToLocation",
    "wait",
    "follow",
    "openGate",
    "pickUp",
    "giveItem",
    "say",
    "emote",
)
_BUSY = frozenset({"thinking", "speaking"})


@dataclass(frozen=True, slots=True)
class SimProgress:
    """Live counters for a progress display (called about four times a wall second)."""

    t: float
    duration: float
    calls: int
    events: int
    lines: int
    turns: int
    errors: int
    tokens: int


@dataclass(frozen=True, slots=True)
class SimResult:
    """What a run produced. ``passed`` is None when no scenario was checked."""

    passed: bool | None
    assertions: tuple[AssertionResult, ...]
    sim_seconds: float
    wall_s: float
    stopped: str  # "duration" | "until" | "idle" | "disconnected"
    end_state: dict[str, Any]
    records: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[AssertionResult]:
        return [a for a in self.assertions if not a.passed]

    @property
    def assertion_records(self) -> list[dict[str, Any]]:
        return [a.as_record() for a in self.assertions]


class _TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.level = burst
        self.stamp = time.monotonic()

    def delay(self) -> float:
        """Seconds to wait before one more token is available (0: take it now)."""
        now = time.monotonic()
        self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.level >= 1:
            self.level -= 1
            return 0.0
        return (1 - self.level) / self.rate


class _Run:
    def __init__(
        self,
        world: World,
        writer: TranscriptWriter,
        triggers: Callable[[str, str], bool],
        react_timeout_s: float,
    ) -> None:
        self.world = world
        self.writer = writer
        self.triggers = triggers
        self.react_timeout_s = react_timeout_s
        self.futures: dict[str, tuple[asyncio.Future[ActionDone], float, float]] = {}
        self.status: dict[str, str] = dict.fromkeys(world.npc_ids, "idle")
        self.expect_reaction: dict[str, float] = {}  # npc -> wall deadline
        self.last_event_wall: dict[str, float] = {}
        self.speech: dict[tuple[str, str], tuple[list[str], float, float | None]] = {}
        self.outbox: asyncio.Queue[Perception] = asyncio.Queue()
        self.last_activity = time.monotonic()
        self.changed = asyncio.Event()  # set on every frame from the runtime
        self.errors = 0
        self.ending = False  # set before the client closes: cancelled calls are unfinished

    # world outputs -> transcript, futures, outgoing events
    def process(self, outputs: Iterable[Output]) -> None:
        w = self.writer
        for out in outputs:
            if isinstance(out, Perception):
                w.write(
                    {
                        "type": "event",
                        "t": out.t,
                        "npc": out.npc,
                        "kind": out.kind,
                        "data": out.data,
                    }
                )
                self.outbox.put_nowait(out)
            elif isinstance(out, WorldNote):
                w.write({"type": "world", "t": out.t, "kind": out.kind, **out.data})
            elif isinstance(out, ActionDone):
                entry = self.futures.pop(out.call_id, None)
                rec: dict[str, Any] = {
                    "type": "result",
                    "t": out.t,
                    "id": out.call_id,
                    "npc": out.npc,
                    "cap": out.cap,
                    "ok": out.ok,
                }
                if out.error is None:
                    rec["data"] = out.data
                elif self.ending:
                    rec["error"] = {"code": out.error.code, "message": out.error.message}
                    rec["unfinished"] = True  # still running when the run ended: not an error
                else:
                    rec["error"] = {"code": out.error.code, "message": out.error.message}
                    self.errors += 1
                if entry is not None:
                    fut, wall0, t0 = entry
                    rec["tool_ms"] = round((time.perf_counter() - wall0) * 1000, 3)
                    rec["sim_s"] = round(out.t - t0, 3)
                    if not fut.done():
                        fut.set_result(out)
                w.write(rec)

    # runtime -> game frames other than calls
    def on_message(self, msg: Any) -> None:
        now = time.monotonic()
        self.last_activity = now
        self.changed.set()
        w = self.writer
        if isinstance(msg, Status):
            self.status[msg.npc] = msg.state
            self.expect_reaction.pop(msg.npc, None)
            w.write({"type": "status", "npc": msg.npc, "state": msg.state})
        elif isinstance(msg, Say):
            key = (msg.npc, msg.stream)
            entry = self.speech.get(key)
            if entry is None:
                sent = self.last_event_wall.get(msg.npc)
                reaction = round((now - sent) * 1000, 3) if sent is not None else None
                entry = ([], self.world.t, reaction)
                self.speech[key] = entry
            entry[0].append(msg.text)
        elif isinstance(msg, SayEnd):
            parts, t0, reaction = self.speech.pop((msg.npc, msg.stream), ([], self.world.t, None))
            text = "".join(parts)
            rec: dict[str, Any] = {
                "type": "line",
                "npc": msg.npc,
                "stream": msg.stream,
                "text": text,
                "reason": msg.reason,
                "started_t": t0,
            }
            if reaction is not None:
                rec["reaction_ms"] = reaction
            w.write(rec)
            if text.strip() and msg.npc in self.world.entities:
                self.process(self.world.speak(msg.npc, text))
        elif isinstance(msg, Cancel):
            w.write({"type": "cancel", "id": msg.id, "reason": msg.reason})
        elif isinstance(msg, Error):
            self.errors += 1
            w.write({"type": "error", "kind": str(msg.code), "id": msg.id, "message": msg.message})

    async def handle(self, call: Call) -> Any:
        """Every game capability: start it in the world, answer when the world is done."""
        self.last_activity = time.monotonic()
        self.changed.set()
        world = self.world
        rec: dict[str, Any] = {
            "type": "call",
            "t": world.t,
            "id": call.id,
            "npc": call.npc,
            "cap": call.cap,
            "args": call.args,
            "mode": call.mode,
            "deadline_ms": call.deadline_ms,
        }
        if call.npc in world.entities:
            x, z = world.position(call.npc)
            rec["at"] = {"x": round(x, 3), "z": round(z, 3)}
        self.writer.write(rec)
        fut: asyncio.Future[ActionDone] = asyncio.get_running_loop().create_future()
        self.futures[call.id] = (fut, time.perf_counter(), world.t)
        self.process(world.start(call.id, call.npc, call.cap, call.args))
        try:
            done = await fut
        except asyncio.CancelledError:
            why = "the run ended" if self.ending else "cancelled by the runtime"
            self.process(world.cancel(call.id, why))
            self.futures.pop(call.id, None)
            raise
        if done.error is not None:
            raise GameCallError(done.error.code, done.error.message)
        return done.data

    def quiet(self) -> bool:
        """True when the runtime has nothing in progress that simulated time should wait for."""
        if not self.outbox.empty():
            return False
        now = time.monotonic()
        for npc, deadline in list(self.expect_reaction.items()):
            if self.status.get(npc) == "acting" and self.world.busy(npc):
                # Busy with a world action: the runtime queues the trigger until the action
                # ends, which needs simulated time to pass. Waiting here would only stall.
                continue
            if now < deadline:
                return False
            del self.expect_reaction[npc]  # no reaction came: not a trigger after all
        for npc, state in self.status.items():
            if state in _BUSY:
                return False
            if state == "acting" and not self.world.busy(npc):
                return False
        return True

    async def send_events(self, client: GameClient, bucket: _TokenBucket) -> None:
        while True:
            ev = await self.outbox.get()
            try:
                wait = bucket.delay()
                if wait:
                    await asyncio.sleep(wait)
                    bucket.delay()
                while True:
                    try:
                        await client.event(ev.npc, ev.kind, ev.data)
                        break
                    except Disconnected:
                        await client.wait_connected(None)
                now = time.monotonic()
                self.last_event_wall[ev.npc] = now
                self.last_activity = now
                if self.triggers(ev.npc, ev.kind):
                    self.expect_reaction[ev.npc] = now + self.react_timeout_s
            finally:
                self.outbox.task_done()


_HELLO_BUDGET = 40_000  # bytes of NPC entries in hello, well under the 64 KiB frame limit


def _split_npcs(world: World) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """NPCs to declare in hello (as many as fit the frame, with their state when all fit)
    and the rest, spawned one by one after the welcome at the bridge's message rate."""
    full = [
        {"npc": npc, "character": world.character_of(npc), "state": world.state_of(npc)}
        for npc in world.npc_ids
    ]
    if len(encode_map({"npcs": full})) <= _HELLO_BUDGET:
        return full, []
    bare = [{"npc": e["npc"], "character": e["character"]} for e in full]
    size, cut = 0, 0
    for entry in bare:
        size += len(encode_map(entry))
        if size > _HELLO_BUDGET:
            break
        cut += 1
    return bare[:cut], full[cut:]


def _default_triggers(
    world: World, triggers: Mapping[str, Iterable[str]] | None
) -> Callable[[str, str], bool]:
    table = {k: frozenset(v) for k, v in (triggers or {}).items()}
    default = frozenset({"heard"})

    def check(npc: str, kind: str) -> bool:
        return kind in table.get(world.character_of(npc), default)

    return check


async def run_world(
    world: World,
    *,
    bridge_url: str,
    transcript: TranscriptWriter,
    token: str | None = None,
    token_in_hello: bool = False,
    scenario: Scenario | None = None,
    duration: float | None = None,
    pace: Literal["lockstep", "realtime"] = "lockstep",
    time_scale: float = 20.0,
    until: Callable[[World], bool] | None = None,
    stop_when_idle: float | None = None,
    capabilities: Iterable[str] | None = None,
    triggers: Mapping[str, Iterable[str]] | None = None,
    settle_s: float = 0.002,
    react_timeout_s: float = 2.0,
    stall_timeout_s: float = 30.0,
    reconnect_timeout_s: float = 30.0,
    game: str = "npcagent-sim",
    progress: Callable[[SimProgress], None] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> SimResult:
    """Run ``world`` against the runtime behind ``bridge_url`` and return the result.

    ``duration``: simulated seconds (default: the scenario's, else 60). ``until(world)``: stop
    early when true (checked every tick). ``stop_when_idle``: stop after this many simulated
    seconds with the script done and every NPC idle. ``triggers``: character id -> event kinds
    that start a turn (default ``heard``), used by lockstep pacing to wait for reactions.
    Raises ``SimRunError`` if the bridge refuses the connection.
    """
    if pace not in ("lockstep", "realtime"):
        raise ValueError(f"pace must be 'lockstep' or 'realtime', not {pace!r}")
    if time_scale <= 0:
        raise ValueError("time_scale must be > 0")
    end_t = duration if duration is not None else scenario.duration if scenario else 60.0
    if transcript.clock is None:
        transcript.clock = lambda: world.t
    run = _Run(world, transcript, _default_triggers(world, triggers), react_timeout_s)
    caps = list(capabilities) if capabilities is not None else list(WORLD_CAPABILITIES)
    in_hello, later = _split_npcs(world)
    client = GameClient(
        bridge_url,
        game=game,
        token=token,
        token_in_hello=token_in_hello,
        capabilities=caps,
        npcs=in_hello,
        # The world's handler starts an action and awaits its end, no timeout before its
        # first await: safe to start in the reader, and many calls answer in one write.
        eager_handlers=True,
    )
    client.default_handler(run.handle)
    client.on_message(run.on_message)
    wall0 = time.perf_counter()
    info = dict(meta or {})
    info.setdefault("world", world.spec.world.name)
    if scenario is not None:
        info.setdefault("scenario", scenario.name)
    try:
        welcome = await client.connect()
    except (HandshakeRejected, Disconnected, OSError) as exc:
        await client.close()
        raise SimRunError(f"cannot connect to the bridge at {bridge_url}: {exc}") from exc
    limits = welcome.limits
    rate = float(limits.get("events_per_s", 200)) * 0.9
    bucket = _TokenBucket(rate, max(1.0, float(limits.get("event_burst", 200)) * 0.9))
    for entry in later:  # spawns count against the same message rate as events
        wait = bucket.delay()
        if wait:
            await asyncio.sleep(wait)
            bucket.delay()
        await client.spawn(entry["npc"], entry["character"], entry.get("state"))
    transcript.write(
        {
            "type": "run",
            "t": world.t,
            **info,
            "session": welcome.session,
            "missing": list(welcome.missing),
            "pace": pace,
            "time_scale": time_scale if pace == "realtime" else None,
            "duration": end_t,
            "tick_ms": world.spec.world.tick_ms,
            "bounds": world.spec.world.bounds.model_dump(),
            "locations": [loc.model_dump() for loc in world.spec.location],
            "npcs": {npc: world.character_of(npc) for npc in world.npc_ids},
            "positions": {
                who: {"x": world.position(who)[0], "z": world.position(who)[1]}
                for who in world.entities
            },
        }
    )
    sender = asyncio.get_running_loop().create_task(run.send_events(client, bucket))
    stopped = "duration"
    idle_since: float | None = None
    next_progress = 0.0
    try:
        while world.t < end_t - 1e-9:
            if until is not None and until(world):
                stopped = "until"
                break
            if not client.connected:
                try:
                    await client.wait_connected(reconnect_timeout_s)
                except TimeoutError:
                    stopped = "disconnected"
                    break
            if pace == "realtime":
                await asyncio.sleep(world.tick_s / time_scale)
            else:
                await _wait_quiet(run, settle_s, stall_timeout_s)
            run.process(world.tick())
            if stop_when_idle is not None:
                idle = world.script_done and world.pending_calls == 0 and run.quiet()
                if not idle or idle_since is None:
                    idle_since = world.t if idle else None
                elif world.t - idle_since >= stop_when_idle:
                    stopped = "idle"
                    break
            if progress is not None and time.perf_counter() >= next_progress:
                next_progress = time.perf_counter() + 0.25
                progress(_progress(run, end_t))
        # Let the last events reach the runtime and the last reactions finish (bounded).
        if pace == "lockstep" and client.connected:
            await _wait_quiet(run, settle_s, min(stall_timeout_s, 5.0))
    finally:
        run.ending = True
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        await client.close()
    end_state = world.snapshot()
    assertions: tuple[AssertionResult, ...] = ()
    if scenario is not None:
        assertions = tuple(evaluate(scenario.expect, transcript.records, end_state))
        for a in assertions:
            transcript.write(a.as_record())
    passed = all(a.passed for a in assertions) if scenario is not None else None
    wall_s = round(time.perf_counter() - wall0, 3)
    transcript.write(
        {"type": "end", "t": world.t, "wall_s": wall_s, "stopped": stopped, "passed": passed}
    )
    if progress is not None:
        progress(_progress(run, end_t))
    return SimResult(
        passed, assertions, world.t, wall_s, stopped, end_state, transcript.records, info
    )


async def _wait_quiet(run: _Run, settle_s: float, stall_timeout_s: float) -> None:
    """Lockstep: hold the clock until the runtime is quiet and no frame arrived for
    ``settle_s`` (bounded by ``stall_timeout_s``, after which NPCs still busy are recorded
    as stalled and no longer waited for until they send a new status)."""
    start = time.monotonic()
    await asyncio.sleep(0)
    while True:
        now = time.monotonic()
        since = now - run.last_activity
        if run.quiet() and since >= settle_s:
            return
        if now - start >= stall_timeout_s:
            stalled = [n for n, s in run.status.items() if s in _BUSY or s == "acting"]
            run.writer.write({"type": "stall", "npcs": stalled, "waited_s": round(now - start, 3)})
            for npc in stalled:
                run.status[npc] = "stalled"
            run.expect_reaction.clear()
            return
        if run.quiet():
            await asyncio.sleep(max(settle_s - since, 0.0005))
        else:
            run.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.changed.wait(), 0.02)


def _progress(run: _Run, duration: float) -> SimProgress:
    by = run.writer.by_type
    return SimProgress(
        t=run.world.t,
        duration=duration,
        calls=by["call"],
        events=by["event"],
        lines=by["line"],
        turns=by["turn"],
        errors=run.errors,
        tokens=run.writer.tokens,
    )
