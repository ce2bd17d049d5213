"""`npc caps list|show|check|export` run as a real subprocess, as a designer runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE_ARG = "samples/village"


def npc(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def npc_script() -> Path:
    script = Path(sys.executable).parent / "npc"
    if not script.exists():
        pytest.skip(f"the npc console script is not installed next to {sys.executable}")
    return script


# -- help -------------------------------------------------------------------------------------


def test_npc_help() -> None:
    result = npc("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: npc")
    assert "give game NPCs a mind" in result.stdout
    assert "caps" in result.stdout
    assert "list, show, check and export a project's capabilities" in result.stdout


def test_npc_without_a_command_prints_help_and_exits_2() -> None:
    result = npc()
    assert result.returncode == 2
    assert "usage: npc" in result.stdout


def test_caps_help() -> None:
    result = npc("caps", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: npc caps")
    for action in ("list", "show", "check", "export"):
        assert action in result.stdout
    assert "a table: name, mode, executor, parameters" in result.stdout


def test_caps_without_an_action_prints_help_and_exits_2() -> None:
    result = npc("caps")
    assert result.returncode == 2
    assert "usage: npc caps" in result.stdout


def test_export_help_names_the_formats() -> None:
    result = npc("caps", "export", "--help")
    assert result.returncode == 0
    assert "{openai,jsonschema}" in result.stdout


# -- list -------------------------------------------------------------------------------------


def test_list_table() -> None:
    result = npc("caps", "list", SAMPLE_ARG)
    assert result.returncode == 0, result.stderr
    rows = [line.split(None, 3) for line in result.stdout.splitlines()]
    assert rows[0] == ["NAME", "MODE", "EXECUTOR", "PARAMETERS"]
    table = {row[0]: row[1:] for row in rows[1:]}
    assert table == {
        "goToLocation": ["call", "game", "x: number, z: number"],
        "wait": ["call", "game", "seconds: number"],
        "openGate": ["call", "game"],
        "pickUp": ["call", "game", "item: string"],
        "giveItem": ["call", "game", "item: string, to: string"],
        "say": ["fire", "game", "text: string"],
        "emote": ["fire", "game", 'kind: "wave"|"bow"|"nod"|"laugh"|"shrug"|"angry"'],
        "follow": ["call", "game", "target: string, distance?: number|null"],
        "recall": ["call", "runtime", "topic: string"],
        "remember": ["call", "runtime", "fact: string"],
    }
    # Columns line up: every row's MODE starts at the same offset.
    lines = result.stdout.splitlines()
    offsets = {line.index(row[1], len(row[0])) for line, row in zip(lines, rows, strict=True)}
    assert len(offsets) == 1


# -- show -------------------------------------------------------------------------------------


def test_show_file_capability() -> None:
    result = npc("caps", "show", "goToLocation", SAMPLE_ARG)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "goToLocation(x: number, z: number)"
    assert lines[1] == "  Walk to a point on the ground plane. Answers when the NPC arrives."
    assert lines[2].split() == [
        "mode:", "call", "executor:", "game", "timeout:", "30", "s",
        "idempotent:", "yes", "strict:", "yes",
    ]  # fmt: skip
    assert lines[3] == "  declared at: capabilities/movement.toml:4"
    assert lines[4] == "  characters: guard, merchant, villager"
    assert lines[5] == "  parameters (JSON Schema):"
    schema = json.loads("\n".join(lines[6:]))
    assert schema["required"] == ["x", "z"]
    assert schema["properties"]["x"]["maximum"] == 1000


def test_show_python_capability() -> None:
    result = npc("caps", "show", "recall", SAMPLE_ARG)
    assert result.returncode == 0, result.stderr
    assert "recall(topic: string)" in result.stdout
    assert "executor: runtime" in result.stdout
    social = (REPO / "samples/village/capabilities/social.py").read_text().splitlines()
    line = social.index('@capability(executor="runtime", timeout_s=5)') + 1
    assert f"  declared at: capabilities/social.py:{line}\n" in result.stdout
    assert "  characters: guard, merchant\n" in result.stdout


def test_show_unknown_capability_exits_2() -> None:
    result = npc("caps", "show", "fly", SAMPLE_ARG)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("unknown capability 'fly'; known: goToLocation, wait, ")


# -- check ------------------------------------------------------------------------------------


def test_check_sample_exits_0() -> None:
    result = npc("caps", "check", SAMPLE_ARG)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok: 10 capabilities, 3 characters (guard, merchant, villager)\n"
    assert result.stderr == ""


def test_check_broken_copy_exits_2_with_file_line_field(village: Path) -> None:
    world = village / "capabilities" / "world.toml"
    world.write_text(
        world.read_text().replace('name = "pickUp"\n', 'name = "pickUp"\ncolour = "red"\n')
    )
    guard = village / "characters" / "guard.toml"
    guard.write_text(guard.read_text().replace('triggers = ["heard"]', 'triggers = "heard"'))
    result = npc("caps", "check", str(village))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == (
        "capabilities/world.toml:16: pickUp.colour: unknown key; expected one of "
        "['description', 'executor', 'idempotent', 'mode', 'name', 'parameters', 'timeout_s']"
    )
    assert len(lines) == 2 + 1
    assert lines[1] == "characters/guard.toml:14: triggers: Input should be a valid list"
    assert lines[2] == f"2 problem(s) in {village}"


def test_check_missing_directory_exits_2(tmp_path: Path) -> None:
    result = npc("caps", "check", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert f"{tmp_path / 'nowhere'}: not a directory" in result.stderr


def test_directory_defaults_to_the_current_one() -> None:
    # The console script, as designers run it from inside their project.
    result = subprocess.run(
        [str(npc_script()), "caps", "check"],
        cwd=REPO / SAMPLE_ARG,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 10 capabilities, 3 characters")


# -- export -----------------------------------------------------------------------------------


def test_export_openai_matches_the_registry_snapshot(snapshot: Any) -> None:
    result = npc("caps", "export", SAMPLE_ARG, "--format", "openai")
    assert result.returncode == 0, result.stderr
    snapshot("village_openai", json.loads(result.stdout))


def test_export_defaults_to_openai() -> None:
    default = npc("caps", "export", SAMPLE_ARG)
    assert default.returncode == 0, default.stderr
    tools = json.loads(default.stdout)
    assert {tool["type"] for tool in tools} == {"function"}


def test_export_jsonschema_matches_the_registry_snapshot(snapshot: Any) -> None:
    result = npc("caps", "export", SAMPLE_ARG, "--format", "jsonschema")
    assert result.returncode == 0, result.stderr
    snapshot("village_jsonschema", json.loads(result.stdout))


def test_export_one_character() -> None:
    result = npc("caps", "export", SAMPLE_ARG, "--character", "guard")
    assert result.returncode == 0, result.stderr
    names = [tool["function"]["name"] for tool in json.loads(result.stdout)]
    assert names == ["goToLocation", "openGate", "say", "emote", "wait", "recall", "remember"]


def test_export_unknown_character_exits_2() -> None:
    result = npc("caps", "export", SAMPLE_ARG, "--character", "king")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "unknown character 'king'; known: guard, merchant, villager\n"


def test_export_unknown_format_is_a_usage_error() -> None:
    result = npc("caps", "export", SAMPLE_ARG, "--format", "yaml")
    assert result.returncode == 2
    assert "invalid choice: 'yaml'" in result.stderr


def test_export_and_list_of_a_broken_project_exit_2(village: Path) -> None:
    (village / "npc.toml").write_text("[model\n")
    for action in ("export", "list"):
        result = npc("caps", action, str(village))
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.startswith("npc.toml:1: invalid TOML: ")
