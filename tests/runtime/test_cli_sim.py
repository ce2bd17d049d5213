"""`npc sim` as a user runs it: a subprocess on a copy of the sample project."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "village"
VOLATILE = {
    "wall_ms",
    "wall_s",
    "tool_ms",
    "model_ms",
    "first_speech_ms",
    "reaction_ms",
    "started_at",
    "ended_at",
    "sim_s",
}
"""Real-time measurements: all that may differ between two runs of the same seed."""


def npc(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    target = tmp_path / "village"
    shutil.copytree(SAMPLE, target, ignore=shutil.ignore_patterns(".npc", "__pycache__"))
    return target


def comparable(path: Path) -> list[dict[str, Any]]:
    """A transcript without real-time measurements. Session and call ids stay: `npc sim`
    seeds them (`--seed`), so two runs must agree on them too."""
    return [
        {k: v for k, v in json.loads(line).items() if k not in VOLATILE}
        for line in path.read_text("utf-8").splitlines()
    ]


def test_sim_with_no_options_runs_every_scenario_and_writes_the_reports(tmp_path: Path) -> None:
    """The README's main job: run from a directory holding samples/village, no arguments."""
    workdir = tmp_path / "work"
    shutil.copytree(SAMPLE, workdir / "samples" / "village")
    done = npc("sim", "--quiet", cwd=workdir)
    assert done.returncode == 0, done.stderr
    report = workdir / "sim-report"
    for name in ("transcript.jsonl", "summary.json", "report.html"):
        assert (report / name).is_file()
    summary = json.loads((report / "summary.json").read_text("utf-8"))
    assert summary["passed"] is True
    assert set(summary["scenarios"]) == {"password", "wrong_password", "merchant"}
    for scenario in summary["scenarios"]:
        for name in ("transcript.jsonl", "summary.json", "report.html"):
            assert (report / scenario / name).is_file()
    assert "password: passed" in done.stdout
    combined = [json.loads(line) for line in (report / "transcript.jsonl").open()]
    assert {r["scenario"] for r in combined} == {"password", "wrong_password", "merchant"}


def test_a_failing_scenario_exits_1_naming_its_assertion(project: Path, tmp_path: Path) -> None:
    broken = project / "scenarios" / "wrong_password.toml"
    text = broken.read_text("utf-8").replace(
        'never = "openGate"\ngate_open = false', 'never = "openGate"\ngate_open = true'
    )
    assert text != broken.read_text("utf-8")
    broken.write_text(text, "utf-8")
    done = npc(
        "sim",
        str(project),
        "--scenario",
        "wrong_password",
        "--quiet",
        "--report",
        str(tmp_path / "r"),
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "wrong_password: FAILED" in done.stdout
    assert "failed: gate_open=true" in done.stdout


def test_unknown_scenario_and_broken_world_exit_2(project: Path, tmp_path: Path) -> None:
    done = npc("sim", str(project), "--scenario", "nope", cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown scenario 'nope'" in done.stderr
    world = project / "world.toml"
    world.write_text(world.read_text("utf-8").replace("walk_speed = 1.5", "walk_speed = -1"))
    done = npc("sim", str(project), "--duration", "5", cwd=tmp_path)
    assert done.returncode == 2
    assert "world.toml" in done.stderr
    assert "walk_speed" in done.stderr


def test_record_then_replay_gives_the_same_transcript(project: Path, tmp_path: Path) -> None:
    cassette = tmp_path / "cassette.jsonl"
    first = npc(
        "sim",
        str(project),
        "--scenario",
        "password",
        "--quiet",
        "--record",
        str(cassette),
        "--report",
        str(tmp_path / "a"),
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    assert cassette.stat().st_size > 0
    second = npc(
        "sim",
        str(project),
        "--scenario",
        "password",
        "--quiet",
        "--replay",
        str(cassette),
        "--report",
        str(tmp_path / "b"),
        cwd=tmp_path,
    )
    assert second.returncode == 0, second.stderr
    a = comparable(tmp_path / "a" / "transcript.jsonl")
    b = comparable(tmp_path / "b" / "transcript.jsonl")
    assert any(r.get("type") == "call" and r.get("cap") == "openGate" for r in a)
    assert a == b


def test_replay_of_a_different_run_fails_the_turn_and_says_why(
    project: Path, tmp_path: Path
) -> None:
    cassette = tmp_path / "cassette.jsonl"
    npc(
        "sim",
        str(project),
        "--scenario",
        "merchant",
        "--quiet",
        "--record",
        str(cassette),
        "--report",
        str(tmp_path / "a"),
        cwd=tmp_path,
    )
    done = npc(
        "sim",
        str(project),
        "--scenario",
        "password",
        "--quiet",
        "--replay",
        str(cassette),
        "--report",
        str(tmp_path / "b"),
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "no recording matches" in done.stderr
    turns = [r for r in comparable(tmp_path / "b" / "transcript.jsonl") if r["type"] == "turn"]
    assert turns
    assert turns[0]["outcome"] == "failed"


def test_load_run_gives_each_npc_its_turns(project: Path, tmp_path: Path) -> None:
    done = npc(
        "sim",
        str(project),
        "--npcs",
        "7",
        "--turns",
        "2",
        "--quiet",
        "--report",
        str(tmp_path / "load"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    records = comparable(tmp_path / "load" / "transcript.jsonl")
    spawned = records[0]["npcs"]
    assert len(spawned) == 7
    heard = [r for r in records if r["type"] == "event" and r["kind"] == "heard"]
    assert {r["npc"] for r in heard} == set(spawned)
    turns = [r for r in records if r["type"] == "turn"]
    assert len(turns) >= 14
    summary = json.loads((tmp_path / "load" / "summary.json").read_text("utf-8"))
    assert summary["counts"]["turns"] == len(turns)


def test_a_killed_run_leaves_a_valid_transcript_prefix(project: Path, tmp_path: Path) -> None:
    report = tmp_path / "killed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime.cli",
            "sim",
            str(project),
            "--npcs",
            "40",
            "--turns",
            "40",
            "--quiet",
            "--report",
            str(report),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    transcript = report / "transcript.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if transcript.exists() and transcript.stat().st_size > 20_000:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    data = transcript.read_bytes()
    assert data.endswith(b"\n")
    lines = data.decode("utf-8").splitlines()
    assert len(lines) > 50
    records = [json.loads(line) for line in lines]
    assert records[0]["type"] == "run"
    assert not (report / "summary.json").exists()


def test_chaos_run_with_misbehaviour_replays_identically(project: Path, tmp_path: Path) -> None:
    """Record a run whose offline model misbehaves on purpose, replay it: same transcript."""
    cassette = tmp_path / "chaos.jsonl"
    chaos = "0.5:invalid_json,unknown_tool,http_500,error_mid_stream"
    first = npc(
        "sim",
        str(project),
        "--npcs",
        "3",
        "--turns",
        "3",
        "--quiet",
        "--misbehave",
        chaos,
        "--record",
        str(cassette),
        "--report",
        str(tmp_path / "a"),
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    second = npc(
        "sim",
        str(project),
        "--npcs",
        "3",
        "--turns",
        "3",
        "--quiet",
        "--replay",
        str(cassette),
        "--report",
        str(tmp_path / "b"),
        cwd=tmp_path,
    )
    assert second.returncode == 0, second.stderr
    a = comparable(tmp_path / "a" / "transcript.jsonl")
    b = comparable(tmp_path / "b" / "transcript.jsonl")
    contents = " ".join(str(r.get("content")) for r in a if r.get("role") == "tool")
    assert "INVALID_ARGUMENTS" in contents
    assert a == b


def test_bad_misbehaviour_spec_exits_2(project: Path, tmp_path: Path) -> None:
    done = npc("sim", str(project), "--misbehave", "0.1:explode", cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown misbehaviour 'explode'" in done.stderr
