"""The live viewer's taps: what turns a running world or the runtime's traffic into records.

``SimTap`` reads a ``World`` a few times a second (``scene`` once, then ``tick`` records with
what changed), because the transcript lacks where everyone is *between* arrivals. ``ServeTap``
sits between the bridge server and the runtime in ``npc serve`` (no world) and reports calls,
results, speech, statuses, spawns and events, leaving the runtime's behaviour unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

from bridge import Despawn, Event, Hello, Session, SessionHandler, Spawn
from sim._live_feed import LiveFeed
from sim.world import World

log = logging.getLogger("sim.live")


# -- the simulated world ----------------------------------------------------------------------


class SimTap:
    """Follows one :class:`World` while it runs: a ``scene`` record at the start, then a
    ``tick`` record whenever positions, holdings, gold, items or gates changed (checked every
    ``interval_s`` of wall time, and at least once a second so the clock moves)."""

    def __init__(self, feed: LiveFeed, world: World, *, name: str, interval_s: float = 0.1) -> None:
        self.feed = feed
        self.world = world
        self.name = name
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._last: dict[str, Any] = {}
        self._sent_at = 0.0

    def start(self, **extra: Any) -> None:
        world = self.world
        rules = world.spec.world
        snap = world.snapshot()
        entities = {}
        for who, ent in snap["entities"].items():
            entry = {**ent, "kind": ent["kind"]}
            if ent["kind"] == "npc":
                entry["character"] = world.character_of(who)
            entities[who] = entry
        self.feed.clock = lambda: world.t
        self.feed.push(
            {
                "type": "scene",
                "scenario": self.name,
                "t": world.t,
                "world": rules.name,
                "bounds": rules.bounds.model_dump(),
                "earshot": rules.earshot,
                "walk_speed": rules.walk_speed,
                "locations": [
                    {"name": loc.name, "x": loc.x, "z": loc.z} for loc in world.spec.location
                ],
                "gates": snap["gates"],
                "ground": snap["ground"],
                "entities": entities,
                **extra,
            }
        )
        self._last = self._state(snap)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="live-ticker")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tick(force=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self._tick()
            except Exception:  # never let the picture stop the run
                log.exception("live ticker failed")

    @staticmethod
    def _state(snap: Mapping[str, Any]) -> dict[str, Any]:
        ents = snap["entities"]
        return {
            "positions": {
                who: [round(e["position"]["x"], 2), round(e["position"]["z"], 2)]
                for who, e in ents.items()
            },
            "holding": {who: e["holding"] for who, e in ents.items()},
            "gold": {who: e["gold"] for who, e in ents.items()},
            "ground": snap["ground"],
            "gates": [{"x": g["x"], "z": g["z"], "open": g["open"]} for g in snap["gates"]],
        }

    def _tick(self, *, force: bool = False) -> None:
        now = time.monotonic()
        state = self._state(self.world.snapshot())
        record: dict[str, Any] = {"type": "tick", "t": self.world.t}
        for key in ("positions", "holding", "gold"):
            before = self._last.get(key, {})
            changed = {k: v for k, v in state[key].items() if before.get(k) != v}
            if changed:
                record[key] = changed
        for key in ("ground", "gates"):
            if state[key] != self._last.get(key):
                record[key] = state[key]
        if len(record) == 2 and not force and now - self._sent_at < 1.0:
            return
        self._last = state
        self._sent_at = now
        self.feed.push(record)


# -- npc serve: no world, the runtime's traffic with the games ----------------------------------


# -- npc serve: no world, the runtime's traffic with the games ----------------------------------


class ServeTap:
    """A :class:`bridge.SessionHandler` in front of the runtime: each game session the runtime
    sees is a thin proxy that reports calls, results, speech and statuses to the feed, and
    what the game sends (spawns, despawns, events) on the way in. The runtime's behaviour is
    unchanged: every call goes through to the real session."""

    def __init__(self, inner: SessionHandler, feed: LiveFeed) -> None:
        self.inner = inner
        self.feed = feed
        self._proxies: dict[int, _SessionProxy] = {}

    def missing_capabilities(self, hello: Hello) -> list[str]:
        return self.inner.missing_capabilities(hello)

    async def session_opened(self, session: Session) -> None:
        proxy = _SessionProxy(session, self.feed)
        self._proxies[id(session)] = proxy
        self.feed.push({"type": "game", "game": session.game, "session": session.id})
        for info in session.npcs.values():
            self.feed.push(
                {"type": "spawn", "npc": info.npc, "character": info.character, "state": info.state}
            )
        await self.inner.session_opened(cast(Session, proxy))

    async def session_closed(self, session: Session) -> None:
        proxy = self._proxies.pop(id(session), None)
        self.feed.push({"type": "game_closed", "game": session.game, "session": session.id})
        await self.inner.session_closed(cast(Session, proxy) if proxy is not None else session)


class _SessionProxy:
    """Looks like a :class:`bridge.Session` to the runtime (attributes pass through)."""

    def __init__(self, session: Session, feed: LiveFeed) -> None:
        self._session = session
        self._feed = feed
        self._lines: dict[tuple[str, str], list[str]] = {}
        self._ids = itertools.count(1)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    async def call(
        self, npc: str, cap: str, args: Mapping[str, Any] | None = None, **kw: Any
    ) -> Any:
        key = str(kw.get("call_id") or f"v{next(self._ids)}")
        mode = kw.get("mode", "call")
        self._feed.push(
            {
                "type": "call",
                "id": key,
                "npc": npc,
                "cap": cap,
                "args": dict(args or {}),
                "mode": mode,
            }
        )
        started = time.perf_counter()
        try:
            data = await self._session.call(npc, cap, args, **kw)
        except asyncio.CancelledError:
            self._feed.push(
                {"type": "cancel", "id": key, "npc": npc, "cap": cap, "reason": "cancelled"}
            )
            raise
        except Exception as exc:
            code = str(getattr(exc, "code", type(exc).__name__))
            message = str(getattr(exc, "message", exc))
            self._feed.push(
                {
                    "type": "result",
                    "id": key,
                    "npc": npc,
                    "cap": cap,
                    "ok": False,
                    "error": {"code": code, "message": message},
                    "tool_ms": round((time.perf_counter() - started) * 1000, 3),
                }
            )
            raise
        if mode != "fire":
            self._feed.push(
                {
                    "type": "result",
                    "id": key,
                    "npc": npc,
                    "cap": cap,
                    "ok": True,
                    "data": data,
                    "tool_ms": round((time.perf_counter() - started) * 1000, 3),
                }
            )
        return data

    def say(self, npc: str, stream: str, text: str) -> bool:
        parts = self._lines.setdefault((npc, stream), [])
        if len(parts) < 10_000:
            parts.append(text)
        self._feed.push({"type": "say", "npc": npc, "stream": stream, "text": text})
        return self._session.say(npc, stream, text)

    def say_end(self, npc: str, stream: str, reason: str = "done") -> bool:
        parts = self._lines.pop((npc, stream), [])
        self._feed.push(
            {"type": "line", "npc": npc, "stream": stream, "text": "".join(parts), "reason": reason}
        )
        return self._session.say_end(npc, stream, reason)

    def status(self, npc: str, state: Any) -> bool:
        self._feed.push({"type": "status", "npc": npc, "state": state})
        return self._session.status(npc, state)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.incoming()

    async def incoming(self) -> AsyncIterator[Any]:
        async for message in self._session.incoming():
            if isinstance(message, Spawn):
                self._feed.push(
                    {
                        "type": "spawn",
                        "npc": message.npc,
                        "character": message.character,
                        "state": message.state,
                    }
                )
            elif isinstance(message, Despawn):
                self._feed.push({"type": "despawn", "npc": message.npc})
            elif isinstance(message, Event):
                self._feed.push(
                    {
                        "type": "event",
                        "npc": message.npc,
                        "kind": message.kind,
                        "data": message.data,
                    }
                )
            yield message
