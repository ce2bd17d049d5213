"""``npc serve`` as a real subprocess: a GameClient game connects to its bridge, the offline
model plays the guard, and SIGINT / SIGTERM stop it cleanly (exit 0, database closed)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge import Call, GameClient, Message
from tests.runtime.scripted import eventually

START_TIMEOUT_S = 20.0


@asynccontextmanager
async def serving(project: Path, db: Path, *extra: str) -> AsyncIterator[tuple[Any, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runtime.cli",
        "serve",
        str(project),
        "--port",
        "0",
        "--no-http",
        "--db",
        str(db),
        "--model",
        "offline",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    assert proc.stderr is not None
                    err = (await proc.stderr.read()).decode()
                    pytest.fail(f"npc serve exited before listening: {err}")
                if line.startswith("npc serve: bridge "):
                    url = line.split()[-1]
                    break
        yield proc, url
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def stop(proc: Any, sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    async with asyncio.timeout(15):
        _, err = await proc.communicate()
    return proc.returncode, err.decode()


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def exists(path: Path) -> bool:
    return path.exists()


@pytest.mark.asyncio
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_serve_runs_a_turn_then_stops_cleanly(
    village: Path, tmp_path: Path, sig: int
) -> None:
    db = tmp_path / "serve.sqlite3"
    async with serving(village, db) as (proc, url):
        frames: list[Message] = []
        gate_calls: list[Call] = []
        game = GameClient(url, capabilities=None, npcs=[("g1", "guard")], reconnect=False)
        game.on_message(frames.append)

        async def open_gate(c: Call) -> dict[str, bool]:
            gate_calls.append(c)
            return {"open": True}

        game.handle("openGate", open_gate)
        async with game:
            await game.event("g1", "heard", {"speaker": "player", "text": "oak"})
            await eventually(lambda: any(f.t == "status" and f.state == "idle" for f in frames), 10)
        speech = "".join(f.text for f in frames if f.t == "say")
        assert [c.cap for c in gate_calls] == ["openGate"]
        assert "The gate is open" in speech
        code, err = await stop(proc, sig)

    assert code == 0, err
    assert "Traceback" not in err
    assert "outcome=done" in err  # one log line per turn
    # The database was closed: WAL checkpointed and removed, everything readable.
    assert not exists(tmp_path / "serve.sqlite3-wal")
    roles = [r[0] for r in rows(db, "SELECT role FROM messages WHERE npc = 'g1' ORDER BY id")]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert rows(db, "SELECT turn, outcome, tool_calls FROM turns") == [(1, "done", 1)]


@pytest.mark.asyncio
async def test_sigterm_mid_call_cancels_the_turn_and_exits_0(village: Path, tmp_path: Path) -> None:
    db = tmp_path / "serve.sqlite3"
    async with serving(village, db) as (proc, url):
        started = asyncio.Event()
        ids: list[str] = []
        frames: list[Message] = []
        game = GameClient(url, npcs=[("g1", "guard")], reconnect=False)
        game.on_message(frames.append)

        async def never(c: Call) -> None:
            ids.append(c.id)
            started.set()
            await asyncio.Event().wait()

        game.handle("openGate", never)
        async with game:
            await game.event("g1", "heard", {"speaker": "player", "text": "oak"})
            await asyncio.wait_for(started.wait(), 10)
            code, err = await stop(proc, signal.SIGTERM)

    assert code == 0, err
    assert "Traceback" not in err
    # The game was told to stop the action before the bridge closed.
    assert [(f.t, f.id) for f in frames if f.t == "cancel"] == [("cancel", ids[0])]
    assert not exists(tmp_path / "serve.sqlite3-wal")
    assert rows(db, "SELECT outcome FROM turns") == [("cancelled",)]
    (last,) = rows(db, "SELECT message FROM messages WHERE role = 'tool'")
    assert json.loads(json.loads(last[0])["content"])["error"]["code"] == "CANCELLED"


@pytest.mark.asyncio
async def test_serve_rejects_an_invalid_project_with_exit_2(village: Path, tmp_path: Path) -> None:
    (village / "characters" / "guard.toml").write_text('id = "guard"\nname = ""\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runtime.cli",
        "serve",
        str(village),
        "--port",
        "0",
        "--no-http",
        "--db",
        str(tmp_path / "x.sqlite3"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(20):
        _, err = await proc.communicate()
    assert proc.returncode == 2
    assert "characters/guard.toml" in err.decode()
    assert not exists(tmp_path / "x.sqlite3")
