"""`npc offline-model` as a real subprocess: it prints its URL and answers the openai wire."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx2

from tests.runtime.offline._offline_support import REPO, VILLAGE, assemble_stream, tools_for


def test_offline_model_command_serves_the_project() -> None:
    command = [sys.executable, "-m", "runtime.cli", "offline-model", str(VILLAGE), "--port", "0"]
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("offline model: http://127.0.0.1:"), line
        base_url = line.split(": ", 1)[1].strip()
        body = {
            "model": "guard",
            "messages": [{"role": "user", "content": 'player says: "oak"'}],
            "tools": tools_for("guard"),
            "stream": True,
        }
        with httpx2.Client(base_url=base_url, timeout=10) as client:
            result = assemble_stream(client.post("chat/completions", json=body).content)
            models = client.get("models").json()
        assert [c[1] for c in result.tool_calls] == ["openGate"]
        assert [m["id"] for m in models["data"]] == ["guard", "merchant", "villager"]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""


def test_offline_model_command_usage_errors() -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "offline-model", str(VILLAGE), "--misbehave", "x"],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2
    assert "misbehave" in bad.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "offline-model", str(REPO / "nowhere")],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2
    assert "not a directory" in missing.stderr
