"""The live viewer's feed: numbered, JSON-encoded records in a bounded ring, fanned out to pages.

Why a ring with sticky records: the feed must stay bounded for a long run, yet a page that
connects late still needs the ``scene``/``run``/``game``/``spawn`` records to draw anything.
``push`` is callable from any thread (the runtime's record hook) and never blocks or raises;
each page's queue is bounded, and a page that falls behind is marked lagging and dropped by
the server (it catches up by reconnecting with ``Last-Event-ID``). See ``sim.live``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("sim.live")

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
