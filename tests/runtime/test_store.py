"""Persistence (runtime.store): the SQLite store on its writer thread, checked from outside
with separate sqlite3 connections, and the in-memory store it must agree with."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from runtime.project import Project
from runtime.session import NpcSession
from runtime.store import MemoryStore, MessageRecord, SQLiteStore, Store, TurnRecord
from tests.runtime.scripted import FakeLink, Reply, ScriptedModel, call, eventually, make_project


def message(npc: str, turn: int, content: str, role: str = "user") -> MessageRecord:
    return MessageRecord(npc, "tester", turn, {"role": role, "content": content})


def turn_record(npc: str, turn: int, outcome: str = "done") -> TurnRecord:
    return TurnRecord(npc, "tester", turn, 1.0, 2.0, 1, 0, outcome, 5.0, None, 0.0, 10, 2)


def rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read with a connection of our own, as another process would."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def exists(path: Path) -> bool:
    return path.exists()


@pytest_asyncio.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "db" / "npc.sqlite3")
    yield store
    await store.close()


@pytest.mark.asyncio
async def test_database_is_created_in_wal_mode(sqlite_store: SQLiteStore) -> None:
    db = Path(sqlite_store.path)
    assert exists(db)
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]
    tables = {r[0] for r in rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"messages", "turns", "memories"} <= tables


@pytest.mark.asyncio
async def test_writes_are_committed_without_being_awaited(sqlite_store: SQLiteStore) -> None:
    db = Path(sqlite_store.path)
    sqlite_store.append_message(message("a", 1, "hello"))
    # Nobody awaits or flushes: the writer thread commits on its own.
    await eventually(lambda: rows(db, "SELECT COUNT(*) FROM messages") == [(1,)])
    ((npc, turn, role, text),) = rows(db, "SELECT npc, turn, role, message FROM messages")
    assert (npc, turn, role, json.loads(text)) == (
        "a",
        1,
        "user",
        {"role": "user", "content": "hello"},
    )


@pytest.mark.asyncio
async def test_history_order_limit_and_last_turn(sqlite_store: SQLiteStore) -> None:
    for i in range(6):
        sqlite_store.append_message(message("a", 1 + i // 2, f"a{i}"))
        sqlite_store.append_message(message("b", 7, f"b{i}"))
    # Reads queue behind the writes: no flush needed to see them.
    history = await sqlite_store.load_history("a", 4)
    assert [m["content"] for m in history] == ["a2", "a3", "a4", "a5"]
    assert await sqlite_store.last_turn("a") == 3
    assert await sqlite_store.last_turn("b") == 7
    assert await sqlite_store.last_turn("nobody") == 0
    assert await sqlite_store.load_history("nobody", 10) == []


@pytest.mark.asyncio
async def test_messages_keep_tool_calls_and_meta(sqlite_store: SQLiteStore) -> None:
    wire = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "go", "arguments": "{}"}}
        ],
    }
    sqlite_store.append_message(
        MessageRecord("a", "tester", 1, wire, meta={"prompt_tokens": 3, "completion_tokens": 1})
    )
    sqlite_store.append_message(
        MessageRecord("a", "tester", 1, {"role": "tool", "tool_call_id": "c1", "content": "é"})
    )
    sqlite_store.append_turn(turn_record("a", 1))
    await sqlite_store.flush()
    db = Path(sqlite_store.path)
    assert await sqlite_store.load_history("a", 10) == [
        wire,
        {"role": "tool", "tool_call_id": "c1", "content": "é"},
    ]
    meta = rows(db, "SELECT meta FROM messages WHERE role = 'assistant'")[0][0]
    assert json.loads(meta) == {"prompt_tokens": 3, "completion_tokens": 1}
    assert rows(db, "SELECT npc, turn, outcome, prompt_tokens FROM turns") == [("a", 1, "done", 10)]


@pytest.mark.asyncio
async def test_memories_are_recalled_by_word_most_recent_first(sqlite_store: SQLiteStore) -> None:
    for fact in ("The baker sells rye bread.", "The smith owes me money.", "Bread is cheap."):
        await sqlite_store.remember("a", fact)
    await sqlite_store.remember("b", "The baker is b's cousin.")
    assert await sqlite_store.recall("a", "bread") == [
        "Bread is cheap.",
        "The baker sells rye bread.",
    ]
    assert await sqlite_store.recall("a", "bread", limit=1) == ["Bread is cheap."]
    assert await sqlite_store.recall("a", "dragons") == []
    assert await sqlite_store.recall("b", "baker") == ["The baker is b's cousin."]
    assert rows(Path(sqlite_store.path), "SELECT COUNT(*) FROM memories") == [(4,)]


@pytest.mark.asyncio
async def test_a_bad_row_does_not_stop_the_writer(
    sqlite_store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "runtime.store")
    sqlite_store.append_message(message("a", 1, "before"))
    bad = MessageRecord(None, "tester", 1, {"role": "user", "content": "x"})  # type: ignore[arg-type]
    sqlite_store.append_message(bad)  # violates NOT NULL
    sqlite_store.append_message(message("a", 1, "after"))
    await sqlite_store.flush()
    assert [m["content"] for m in await sqlite_store.load_history("a", 10)] == ["before", "after"]
    assert "could not write a row" in caplog.text


@pytest.mark.asyncio
async def test_close_commits_everything_queued_and_a_reopen_sees_it(tmp_path: Path) -> None:
    db = tmp_path / "npc.sqlite3"
    store = SQLiteStore(db)
    for i in range(200):
        store.append_message(message("a", i, f"m{i}"))
    store.append_turn(turn_record("a", 199))
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(RuntimeError):
        store.append_message(message("a", 1, "late"))
    assert rows(db, "SELECT COUNT(*) FROM messages") == [(200,)]
    # Closed cleanly: the WAL was checkpointed into the main file and removed.
    assert not exists(tmp_path / "npc.sqlite3-wal")
    again = SQLiteStore(db)
    try:
        assert await again.last_turn("a") == 199
        assert [m["content"] for m in await again.load_history("a", 2)] == ["m198", "m199"]
    finally:
        await again.close()


@pytest.mark.asyncio
async def test_memory_store_agrees_with_sqlite(tmp_path: Path) -> None:
    sqlite = SQLiteStore(tmp_path / "npc.sqlite3")
    memory = MemoryStore()
    stores: list[Store] = [sqlite, memory]
    try:
        for store in stores:
            for i in range(5):
                store.append_message(message("a", i, f"a{i}"))
            await store.remember("a", "Apples are red.")
            await store.remember("a", "Pears are green.")
        for limit in (0, 1, 3, 10):
            assert await sqlite.load_history("a", limit) == await memory.load_history("a", limit)
        assert await sqlite.last_turn("a") == await memory.last_turn("a") == 4
        for query in ("apples", "are", "x", "PEARS green"):
            assert await sqlite.recall("a", query) == await memory.recall("a", query)
    finally:
        await sqlite.close()


# -- a real turn --------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Project:
    built: Project = make_project(tmp_path / "project")
    return built


@pytest.mark.asyncio
async def test_every_message_of_a_turn_is_on_disk_right_after_it(
    project: Project, tmp_path: Path
) -> None:
    db = tmp_path / "turns.sqlite3"
    store = SQLiteStore(db)
    script = [
        Reply("Going.", calls=[call("goToLocation", {"x": 1, "z": 2}, "w")]),
        Reply("Arrived."),
    ]
    try:
        async with ScriptedModel(script) as model:
            session = NpcSession(
                "t1",
                project.characters["tester"],
                project.registry,
                model.client(),
                store,
                project.config.limits,
                link=FakeLink(handler=lambda c: {"ok": True}),
            )
            result = await session.run_turn('p says: "go"')
            # No flush: a separate connection sees the whole turn within moments.
            await eventually(lambda: rows(db, "SELECT COUNT(*) FROM turns") == [(1,)], 2.0)
            stored = [
                json.loads(r[0]) for r in rows(db, "SELECT message FROM messages ORDER BY id")
            ]
            assert stored == list(session.history)
            assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
            ((outcome, steps, tools, prompt, completion),) = rows(
                db, "SELECT outcome, steps, tool_calls, prompt_tokens, completion_tokens FROM turns"
            )
            assert (outcome, steps, tools) == ("done", 2, 1)
            assert (prompt, completion) == (result.prompt_tokens, result.completion_tokens)
            assert (prompt, completion) == (40, 10)
    finally:
        await store.close()
