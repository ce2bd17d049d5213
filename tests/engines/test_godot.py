"""The Godot 3 addon in a real headless Godot (Debian's godot3-server): its msgpack codec,
a full guard turn against `npc serve samples/village`, and the conformance kit."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from engine_tools import (  # type: ignore[import-not-found, unused-ignore]
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
