"""docs/endpoint.md runs as written: every curl and Python example against a real
``npc serve samples/village`` (only the port differs), and every ``# expected`` comment of a
Python ``print`` is what it printed."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.runtime.endpoint._endpoint_support import SAMPLE

DOC = Path(__file__).resolve().parents[3] / "docs" / "endpoint.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXPECTED = re.compile(r"print\(.*\)[ \t]+# (.+)$", re.MULTILINE)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(DOC.read_text("utf-8")) if lang == language]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    db = tmp_path_factory.mktemp("serve") / "npc.sqlite3"
    env = {**os.environ, "NPC_API_KEYS": "secret-1"}
    env.pop("OPENAI_BASE_URL", None)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "runtime.cli", "serve", str(SAMPLE), "--port", "0"),
            *("--http-port", str(port), "--db", str(db), "--log-level", "WARNING"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"npc serve did not come up:\n{stderr}")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_the_doc_has_examples() -> None:
    assert len([b for b in blocks("sh") if b.startswith("curl")]) >= 4
    assert len(blocks("python")) >= 3


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("index", range(len([b for b in blocks("sh") if b.startswith("curl")])))
def test_curl_examples(served: int, index: int) -> None:
    script = [b for b in blocks("sh") if b.startswith("curl")][index]
    script = script.replace("127.0.0.1:8080", f"127.0.0.1:{served}")
    done = subprocess.run(
        ["bash", "-c", "set -eo pipefail\n" + script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.strip()
    if out.startswith("data: "):
        assert out.endswith("data: [DONE]")
    else:
        body = json.loads(out)
        assert "error" not in body, body


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_examples(served: int, index: int) -> None:
    code = blocks("python")[index]
    done = subprocess.run(
        [sys.executable, "-c", code.replace("127.0.0.1:8080", f"127.0.0.1:{served}")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for expected in EXPECTED.findall(code):
        assert expected.strip() in done.stdout, (expected, done.stdout)
