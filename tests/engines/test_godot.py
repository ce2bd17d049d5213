"""The Godot 3 addon in a real headless Godot (Debian's godot3-server): its msgpack codec,
a full guard turn against `npc serve samples/village`, and the conformance kit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path

import pytest

from tests.engines.engine_tools import (
    REPO,
    conformance_kit,
    ensure_tool,
    finish,
    npc_serve,
    run,
)

GODOT_PROJECT = REPO / "samples" / "godot"
# Godot prints script problems and carries on; any of these fails the test.
SCRIPT_PROBLEMS = re.compile(
    r"SCRIPT ERROR|Parse Error|Failed loading|Can't load|Invalid call|Cannot (?:load|open)"
)


@pytest.fixture(scope="session")
def godot() -> str:
    path = ensure_tool("godot3-server", ["godot3-server"])
    if path is None:
        pytest.skip("godot3-server is not installed and `apt-get install godot3-server` failed")
    return str(path)


def godot_env(home: Path, **extra: str) -> dict[str, str]:
    # Godot keeps user:// data under $HOME: give each run its own.
    return {**os.environ, "HOME": str(home), "LANG": "C.UTF-8", **extra}


def run_godot(
    godot: str, script: str, home: Path, *, project: Path = GODOT_PROJECT, **env: str
) -> tuple[int, str]:
    rc, out = run(
        [godot, "--no-window", "--path", str(project), "-s", script],
        env=godot_env(home, **env),
        cwd=project,
        timeout=60,
    )
    problems = SCRIPT_PROBLEMS.findall(out)
    assert not problems, f"GDScript problems {problems}:\n{out}"
    return rc, out


def test_gdscript_codec(godot: str, tmp_path: Path) -> None:
    rc, out = run_godot(godot, "res://tests/msgpack_test.gd", tmp_path)
    assert rc == 0, out
    assert "NPC-TEST PASS msgpack" in out


def test_parse_errors_are_caught(godot: str, tmp_path: Path) -> None:
    """The problem filter above is what turns a broken script into a failure: prove it."""
    project = tmp_path / "broken"
    project.mkdir()
    (project / "project.godot").write_text("config_version=4\n")
    (project / "broken.gd").write_text("extends SceneTree\nfunc _init(:\n\tquit(0)\n")
    with pytest.raises(AssertionError, match="GDScript problems"):
        run_godot(godot, "res://broken.gd", tmp_path / "home", project=project)


@pytest.mark.slow
def test_guard_turn_against_npc_serve(godot: str, tmp_path: Path) -> None:
    with npc_serve(tmp_path / "npc.sqlite3") as served:
        rc, out = run_godot(godot, "res://tests/guard_turn.gd", tmp_path, NPC_BRIDGE_URL=served.url)
    assert rc == 0, out
    assert "NPC-TEST PASS guard turn" in out
    assert "gate opened by the guard" in out
    # The offline guard answers the password and speaks again once openGate returned.
    assert re.search(r"guard-1 says \(done\): .*[Oo]ak", out), out
    assert out.index("gate opened") < out.rindex("guard-1 says (done)")


@pytest.mark.slow
def test_addon_passes_the_conformance_kit(godot: str, tmp_path: Path) -> None:
    with conformance_kit() as kit:
        rc, out = run_godot(godot, "res://tests/conformance.gd", tmp_path, NPC_BRIDGE_URL=kit.url)
        kit_rc, report = finish(kit, timeout=30)
    assert kit_rc == 0, report
    assert "9/9 checks passed: PASSED" in report
    assert rc == 0, out


class CutProxy:
    """TCP relay to the bridge that aborts its first connection shortly after the runtime
    answered (the welcome): a cut cable, without a closing handshake."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> CutProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for w in self._writers:
            w.transport.abort()
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first = self.connections == 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    if down and first:
                        asyncio.get_running_loop().call_later(0.3, self._cut, writer, up_writer)
            dst.close()

        for task in (
            asyncio.ensure_future(pump(reader, up_writer, False)),
            asyncio.ensure_future(pump(up_reader, writer, True)),
        ):
            self._tasks.add(task)

    @staticmethod
    def _cut(*writers: asyncio.StreamWriter) -> None:
        for w in writers:
            w.transport.abort()


@pytest.mark.slow
@pytest.mark.asyncio
async def test_addon_reconnects_and_resumes_its_session(godot: str, tmp_path: Path) -> None:
    with npc_serve(tmp_path / "npc.sqlite3") as served:
        host, port = served.url.removeprefix("ws://").rsplit(":", 1)
        async with CutProxy(host, int(port)) as proxy:
            url = f"ws://127.0.0.1:{proxy.port}"
            rc, out = await asyncio.to_thread(
                run_godot, godot, "res://tests/resume.gd", tmp_path, NPC_BRIDGE_URL=url
            )
            connections = proxy.connections
    assert rc == 0, out
    assert "NPC-TEST PASS resumed session" in out
    assert "NPC-TEST disconnected" in out
    assert connections == 2
