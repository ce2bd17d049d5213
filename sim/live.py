"""The live viewer: one page on loopback that shows a run as it happens (docs/viewer.md).

Why a feed of records and not a second bridge connection: everything worth showing is
already a record. In ``npc sim`` every record of the transcript (perceptions, calls,
results, lines, statuses, world notes, the runtime's turns) passes through
``TranscriptWriter.write``; the CLI hands each one to :meth:`LiveFeed.push` as well. What
the transcript lacks for a moving picture (where everyone is *between* arrivals) a
:class:`SimTap` adds: ``scene`` (the map) and ``tick`` (positions, holdings, gates) records
read from the world a few times a second. In ``npc serve`` there is no world; a
:class:`ServeTap` sits between the bridge server and the runtime and turns what the runtime
sends to games (calls, speech, statuses) and what games send (spawns, events) into the same
kinds of records.

The page reads ``GET /feed``, a Server-Sent-Events stream: ``id: N`` + ``data: <record JSON>``
per record, replayed from the start (or from ``Last-Event-ID`` after a reconnect, which
``EventSource`` does by itself), then live. A tiny HTTP/1.1 server on asyncio streams serves
it: no dependency, no thread, no file outside ``sim/live/``. Loopback only; the ``Host``
header must name loopback (DNS rebinding); the page may load nothing from elsewhere (CSP).

Bounded everything: the feed keeps the last ``max_records`` encoded records (a page that
connects later gets the retained ``scene``/``spawn`` records first); each page has a bounded
queue, and a page that falls behind is disconnected and catches up by reconnecting.

Exceptions: none of its own. Bad HTTP requests get 400/404/405; a page that goes away is
forgotten; a record that cannot be JSON is sanitised.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from bridge import Despawn, Event, Hello, Session, SessionHandler, Spawn
from sim.world import World

__all__ = ["LiveFeed", "LiveServer", "ServeTap", "SimTap", "start_viewer"]

log = logging.getLogger("sim.live")

PAGE = Path(__file__).with_name("live") / "index.html"
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]"})
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
)
# Retained across the ring buffer: what a late page needs to draw anything at all.
_STICKY = frozenset({"scene", "run", "game", "spawn"})


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class LiveFeed:
    """Numbered, encoded records for any number of pages. ``push`` may be called from any
    thread (the runtime's record hook) and never blocks or raises."""

    def __init__(
        self, *, max_records: int = 50_000, clock: Callable[[], float] | None = None
    ) -> None:
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        self.clock = clock
        self.max_records = max_records
        self._records: deque[tuple[int, str, bytes]] = deque()
        self._sticky: dict[tuple[str, str], tuple[int, bytes]] = {}
        self._seq = itertools.count(1)
        self.last_id = 0
        self._subscribers: set[_Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.get_ident()

    def push(self, record: Mapping[str, Any]) -> None:
        try:
            rec = dict(record)
            if "t" not in rec and self.clock is not None:
                rec["t"] = round(self.clock(), 3)
            try:
                text = json.dumps(rec, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            except (TypeError, ValueError):
                text = json.dumps(_jsonable(rec), ensure_ascii=False, separators=(",", ":"))
        except Exception:  # a viewer must never break the run
            log.exception("live feed: record dropped")
            return
        loop = self._loop
        if loop is not None and self._thread != threading.get_ident():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                loop.call_soon_threadsafe(self._append, rec, text)
            return
        self._append(rec, text)

    def _append(self, rec: Mapping[str, Any], text: str) -> None:
        with self._lock:
            rid = next(self._seq)
            self.last_id = rid
            frame = f"id: {rid}\ndata: {text}\n\n".encode()
            kind = str(rec.get("type"))
            self._records.append((rid, kind, frame))
            if len(self._records) > self.max_records:
                self._records.popleft()
            if kind in _STICKY:
                key = str(rec.get("npc") or rec.get("scenario") or "")
                if kind == "scene":  # a new scene starts a new picture
                    self._sticky.clear()
                self._sticky[(kind, key)] = (rid, frame)
            elif kind == "despawn":
                self._sticky.pop(("spawn", str(rec.get("npc"))), None)
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.offer(frame)

    def backlog(self, after: int) -> list[bytes]:
        """Frames a page that has seen ids up to ``after`` still needs."""
        with self._lock:
            first = self._records[0][0] if self._records else self.last_id + 1
            frames = [f for rid, _, f in self._records if rid > after]
            if after + 1 < first:  # some were dropped from the ring: give the sticky ones
                sticky = [f for rid, f in sorted(self._sticky.values()) if rid < first]
                frames = sticky + frames
            return frames

    def subscribe(self, after: int, limit: int = 20_000) -> _Subscriber:
        with self._lock:
            sub = _Subscriber(limit)
            self._subscribers.add(sub)
        for frame in self.backlog(after):
            sub.offer(frame)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


class _Subscriber:
    """One page's queue; overflowing marks it lagging, and the server then drops the page."""

    def __init__(self, limit: int) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.limit = limit
        self.lagging = False

    def offer(self, frame: bytes) -> None:
        if self.queue.qsize() >= self.limit:
            self.lagging = True
            return
        self.queue.put_nowait(frame)


class LiveServer:
    """``async with LiveServer(feed, port=0) as server:`` serves ``server.url`` on loopback."""

    def __init__(
        self,
        feed: LiveFeed,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        mode: str = "sim",
        title: str = "npc live",
        heartbeat_s: float = 15.0,
    ) -> None:
        self.feed = feed
        self.host = host
        self.port = port
        self.mode = mode
        self.title = title
        self.heartbeat_s = heartbeat_s
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._page = PAGE.read_bytes()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def start(self) -> None:
        self.feed.bind(asyncio.get_running_loop())
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._clients):
            task.cancel()
        for task in list(self._clients):
            with contextlib.suppress(BaseException):
                await task
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    async def __aenter__(self) -> LiveServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- HTTP -------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > 16_384:
            await _respond(writer, 431, b"request header too large\n")
            return
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await _respond(writer, 400, b"bad request\n")
            return
        method, target = parts[0], parts[1]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        host = _hostname(headers.get("host", ""))
        if host not in _LOOPBACK:
            await _respond(writer, 403, b"the live viewer answers loopback names only\n")
            return
        if method not in ("GET", "HEAD"):
            await _respond(writer, 405, b"method not allowed\n", {"Allow": "GET, HEAD"})
            return
        url = urlsplit(target)
        body_only = method == "GET"
        if url.path in ("/", "/index.html"):
            await _respond(
                writer,
                200,
                self._page,
                {"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": _CSP},
                body=body_only,
            )
        elif url.path == "/feed" and body_only:
            await self._stream(writer, headers, parse_qs(url.query))
        elif url.path == "/info":
            info = {
                "mode": self.mode,
                "title": self.title,
                "records": self.feed.last_id,
                "pages": self.feed.subscribers,
            }
            data = json.dumps(info).encode()
            await _respond(writer, 200, data, {"Content-Type": "application/json"}, body=body_only)
        elif url.path == "/favicon.ico":
            await _respond(writer, 204, b"")
        else:
            await _respond(writer, 404, b"not found\n")

    async def _stream(
        self, writer: asyncio.StreamWriter, headers: Mapping[str, str], query: Mapping[str, Any]
    ) -> None:
        after = _int(headers.get("last-event-id")) or _int((query.get("after") or [None])[0])
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-store\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n"
            b"\r\n"
        )
        hello = {"type": "live", "mode": self.mode, "title": self.title, "after": after or 0}
        writer.write(b"retry: 1000\ndata: " + json.dumps(hello).encode() + b"\n\n")
        sub = self.feed.subscribe(after or 0)
        try:
            while not sub.lagging:
                try:
                    frame = await asyncio.wait_for(sub.queue.get(), self.heartbeat_s)
                except TimeoutError:
                    frame = b": keep-alive\n\n"
                chunk = [frame]
                while not sub.queue.empty() and len(chunk) < 512:
                    chunk.append(sub.queue.get_nowait())
                writer.write(b"".join(chunk))
                async with asyncio.timeout(10):  # a page that stops reading is let go
                    await writer.drain()
        finally:
            self.feed.unsubscribe(sub)


def _hostname(value: str) -> str:
    """The name part of a Host header (``[::1]:8770`` -> ``[::1]``)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0]


def _int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
}


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    data: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    body: bool = True,
) -> None:
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}"]
    fields = {
        "Content-Type": "text/plain; charset=utf-8",
        "Content-Length": str(len(data)),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Connection": "close",
        **(headers or {}),
    }
    head += [f"{k}: {v}" for k, v in fields.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (data if body else b""))
    await writer.drain()


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


async def start_viewer(
    port: int, *, mode: str, title: str, clock: Callable[[], float] | None = None
) -> LiveServer:
    """A started :class:`LiveServer` on ``127.0.0.1:port`` (0: any free port) with its feed."""
    if clock is None:
        start = time.monotonic()

        def clock() -> float:
            return time.monotonic() - start

    server = LiveServer(LiveFeed(clock=clock), port=port, mode=mode, title=title)
    await server.start()
    return server
