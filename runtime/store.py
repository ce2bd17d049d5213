"""Persistence: every message of every NPC session, per-turn metrics, and long-term memory.

``Store`` is the interface (so Postgres or Redis can be added); ``SQLiteStore`` is the
implementation shipped. SQLite runs on one dedicated thread, never on the event loop: writes
are queued without waiting and committed by the writer thread as they arrive (each batch is
one transaction, normally a single message, never more than what queued up during the last
commit), so a crash loses at most the messages of the last few milliseconds and a turn never
waits for the disk. Reads go through the same thread and are awaited.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

__all__ = ["MemoryStore", "MessageRecord", "SQLiteStore", "Store", "TurnRecord"]

T = TypeVar("T")
logger = logging.getLogger("runtime.store")


@dataclass(frozen=True, slots=True)
class MessageRecord:
    npc: str
    character: str
    turn: int
    message: dict[str, Any]
    """The message in chat-completions wire form (role, content, tool_calls, tool_call_id)."""
    at: float = field(default_factory=time.time)
    meta: dict[str, Any] | None = None
    """Timings, token usage, errors: whatever explains this message later."""


@dataclass(frozen=True, slots=True)
class TurnRecord:
    npc: str
    character: str
    turn: int
    started_at: float
    ended_at: float
    steps: int
    tool_calls: int
    outcome: str
    """``done``, ``step_limit``, ``interrupted``, ``failed``, ``cancelled``."""
    model_ms: float
    first_speech_ms: float | None
    tool_ms: float
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None


class Store(Protocol):
    def append_message(self, record: MessageRecord) -> None:
        """Queue a message for durable storage; never blocks the caller."""

    def append_turn(self, record: TurnRecord) -> None: ...

    async def load_history(self, npc: str, limit: int) -> list[dict[str, Any]]:
        """The NPC's last ``limit`` messages in wire form, oldest first."""

    async def last_turn(self, npc: str) -> int: ...

    async def remember(self, npc: str, fact: str) -> None: ...

    async def recall(self, npc: str, query: str, limit: int = 5) -> list[str]: ...

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""

    async def close(self) -> None: ...


class MemoryStore:
    """A store that keeps everything in memory: tests, benchmarks, throwaway sessions."""

    def __init__(self) -> None:
        self.messages: list[MessageRecord] = []
        self.turns: list[TurnRecord] = []
        self.memories: dict[str, list[str]] = {}

    def append_message(self, record: MessageRecord) -> None:
        self.messages.append(record)

    def append_turn(self, record: TurnRecord) -> None:
        self.turns.append(record)

    async def load_history(self, npc: str, limit: int) -> list[dict[str, Any]]:
        mine = [r.message for r in self.messages if r.npc == npc]
        return mine[-limit:] if limit else []

    async def last_turn(self, npc: str) -> int:
        return max((r.turn for r in self.messages if r.npc == npc), default=0)

    async def remember(self, npc: str, fact: str) -> None:
        self.memories.setdefault(npc, []).append(fact)

    async def recall(self, npc: str, query: str, limit: int = 5) -> list[str]:
        return _match(self.memories.get(npc, []), query, limit)

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    npc TEXT NOT NULL,
    character TEXT NOT NULL,
    turn INTEGER NOT NULL,
    role TEXT NOT NULL,
    message TEXT NOT NULL,
    meta TEXT,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_npc ON messages (npc, id);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY,
    npc TEXT NOT NULL,
    character TEXT NOT NULL,
    turn INTEGER NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    steps INTEGER NOT NULL,
    tool_calls INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    model_ms REAL NOT NULL,
    first_speech_ms REAL,
    tool_ms REAL NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS memories (
    id INTEGER PRIMARY KEY,
    npc TEXT NOT NULL,
    fact TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS memories_by_npc ON memories (npc, id);
"""

_STOP = object()


class SQLiteStore:
    """SQLite in WAL mode on a dedicated thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._batch: list[tuple[str, Sequence[Any]]] = []
        self._ready: Future[None] = Future()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="npc-sqlite", daemon=True)
        self._thread.start()
        self._ready.result()

    # -- writes: queued, never awaited ---------------------------------------------------------

    def append_message(self, record: MessageRecord) -> None:
        self._write(
            (
                "INSERT INTO messages (npc, character, turn, role, message, meta, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.npc,
                    record.character,
                    record.turn,
                    str(record.message.get("role", "")),
                    json.dumps(record.message, ensure_ascii=False),
                    None if record.meta is None else json.dumps(record.meta, ensure_ascii=False),
                    record.at,
                ),
            )
        )

    def append_turn(self, record: TurnRecord) -> None:
        self._write(
            (
                "INSERT INTO turns (npc, character, turn, started_at, ended_at, steps, tool_calls,"
                " outcome, model_ms, first_speech_ms, tool_ms, prompt_tokens, completion_tokens,"
                " error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.npc,
                    record.character,
                    record.turn,
                    record.started_at,
                    record.ended_at,
                    record.steps,
                    record.tool_calls,
                    record.outcome,
                    record.model_ms,
                    record.first_speech_ms,
                    record.tool_ms,
                    record.prompt_tokens,
                    record.completion_tokens,
                    record.error,
                ),
            )
        )

    # -- reads: awaited ---------------------------------------------------------------------

    async def load_history(self, npc: str, limit: int) -> list[dict[str, Any]]:
        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT message FROM messages WHERE npc = ? ORDER BY id DESC LIMIT ?", (npc, limit)
            ).fetchall()
            return [json.loads(row[0]) for row in reversed(rows)]

        return await self._read(read)

    async def last_turn(self, npc: str) -> int:
        def read(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT MAX(turn) FROM messages WHERE npc = ?", (npc,)).fetchone()
            return int(row[0] or 0)

        return await self._read(read)

    async def remember(self, npc: str, fact: str) -> None:
        self._write(
            ("INSERT INTO memories (npc, fact, at) VALUES (?, ?, ?)", (npc, fact, time.time()))
        )
        await self.flush()

    async def recall(self, npc: str, query: str, limit: int = 5) -> list[str]:
        def read(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT fact FROM memories WHERE npc = ? ORDER BY id", (npc,)
            ).fetchall()
            return _match([row[0] for row in rows], query, limit)

        return await self._read(read)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Synchronous read for tools and tests (opens its own connection)."""
        with sqlite3.connect(self.path) as db:
            return db.execute(sql, params).fetchall()

    async def flush(self) -> None:
        await self._read(lambda _db: None)

    async def close(self) -> None:
        if self._closed:
            return
        self._send_batch()
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    # -- the writer thread ------------------------------------------------------------------

    def _write(self, item: tuple[str, Sequence[Any]]) -> None:
        """Rows written during one pass of the event loop go to the writer thread together
        (one queue hand-off and one wake-up of the thread, not one per row): with hundreds of
        NPCs answered in the same pass that is most of the store's CPU. Outside a running
        loop a row is handed over at once."""
        if self._closed:
            raise RuntimeError("the store is closed")
        batch = self._batch
        batch.append(item)
        if len(batch) == 1:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._send_batch()
                return
            loop.call_soon(self._send_batch)

    def _send_batch(self) -> None:
        batch = self._batch
        if batch:
            self._batch = []
            self._queue.put(batch)

    def _put(self, item: Any) -> None:
        if self._closed:
            raise RuntimeError("the store is closed")
        self._send_batch()  # reads and flushes see every write made before them
        self._queue.put(item)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        future: Future[T] = Future()
        self._put((fn, future))
        return await asyncio.wrap_future(future)

    def _run(self) -> None:
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except Exception as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        try:
            self._serve(db)
        finally:
            db.close()

    def _serve(self, db: sqlite3.Connection) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            writes = [row for item in batch if type(item) is list for row in item]
            if writes:
                self._commit(db, writes)
            for item in batch:
                if item is _STOP:
                    return
                if type(item) is tuple:
                    fn, future = item
                    try:
                        future.set_result(fn(db))
                    except Exception as exc:
                        future.set_exception(exc)

    @staticmethod
    def _commit(db: sqlite3.Connection, writes: list[tuple[str, Sequence[Any]]]) -> None:
        try:
            db.execute("BEGIN")
            i, n = 0, len(writes)
            while i < n:  # runs of the same statement go in one executemany
                sql = writes[i][0]
                j = i + 1
                while j < n and writes[j][0] == sql:
                    j += 1
                db.executemany(sql, [params for _, params in writes[i:j]])
                i = j
            db.execute("COMMIT")
        except sqlite3.Error:
            # Never let one bad row stop the writer: retry row by row, log what fails.
            if db.in_transaction:
                db.execute("ROLLBACK")
            for sql, params in writes:
                try:
                    db.execute(sql, params)
                except sqlite3.Error:
                    logger.exception("store: could not write a row")


def _match(facts: list[str], query: str, limit: int) -> list[str]:
    """Facts sharing a word with the query, most recent first. Simple on purpose: a designer
    can predict it, and it needs no model."""
    words = {w for w in query.lower().split() if len(w) > 2} or {query.lower().strip()}
    hits = [fact for fact in reversed(facts) if any(w in fact.lower() for w in words)]
    return hits[:limit]
