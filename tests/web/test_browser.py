"""Headless Chromium (Debian's, driven by playwright) against the real thing:

- the live viewer of `npc sim --live` shows a running scenario: NPCs appear, one moves,
  speech and tool calls appear, the verdict arrives;
- npc-bridge.js in a page served from loopback (samples/web/index.html, the demo) completes a
  guard turn against `npc serve`, and `npc serve --viewer` shows it: the NPC, its status,
  its speech and the call.

Set NPC_VIEWER_SCREENSHOT=docs/viewer.png to refresh the screenshot in the docs.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "samples" / "web"
VILLAGE = REPO / "samples" / "village"

SCENARIO = """
[scenario]
description = "Live viewer: the gate opens, the villager follows a player, the merchant talks."
duration = 20

[setup]
player = [
  { id = "player", at = "well", gold = 5 },
  { id = "traveller", at = "gate_road" },
  { id = "visitor", x = 13, z = 2, gold = 10 },
]

[[script]]
at = 1
player = "traveller"
say = "Evening, guard. The password is oak."
to = "guard"

[[script]]
at = 1.5
player = "player"
say = "Tam, follow me please."
to = "villager"

[[script]]
at = 2.5
player = "player"
move = "orchard"

[[script]]
at = 3
player = "visitor"
say = "Good day! What news from the market?"
to = "merchant"

[expect]
gate_open = true
"""


def read_until(proc: subprocess.Popen[str], pattern: str, timeout_s: float = 30.0) -> re.Match[str]:
    """Read the process's stdout until a line matches (or fail with what it printed)."""
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no line matching {pattern!r}; output:\n{''.join(seen)}")


def _project(tmp_path: Path, origins: list[str] | None = None) -> Path:
    project = tmp_path / "village"
    shutil.copytree(VILLAGE, project, ignore=shutil.ignore_patterns(".npc"))
    (project / "scenarios" / "live.toml").write_text(SCENARIO, encoding="utf-8")
    if origins is not None:
        toml = (project / "npc.toml").read_text(encoding="utf-8")
        listed = ", ".join(f'"{o}"' for o in origins)
        toml = toml.replace("[bridge]\n", f"[bridge]\nallowed_origins = [{listed}]\n", 1)
        (project / "npc.toml").write_text(toml, encoding="utf-8")
    return project


@pytest.fixture
def sim_live(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    project = _project(tmp_path)
    cmd = [sys.executable, "-m", "runtime.cli", "sim", str(project), "--scenario", "live"]
    cmd += ["--live", "0", "--time-scale", "4", "--report", str(tmp_path / "report"), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        url = read_until(proc, r"live viewer at (http://\S+)").group(1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_live_viewer_shows_a_running_sim(
    browser: Any, sim_live: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    proc, url = sim_live
    page = browser.new_page(viewport={"width": 1400, "height": 860})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    # nothing but the page and its feed is loaded (the feed is cut when the page closes)
    def outside(request: Any) -> None:
        if not request.url.startswith(url):
            problems.append(f"request to {request.url}")

    page.on("request", outside)
    page.goto(url)
    # NPCs appear on the map (and the players), each with a card
    page.wait_for_function("document.querySelectorAll('#map .ent.npc').length === 3")
    assert page.locator("#map .ent.player").count() == 3
    assert page.locator(".card[data-npc]").count() == 3
    start = float(page.get_attribute("#map .ent[data-id=villager]", "data-x") or "nan")
    # the villager follows the player towards the orchard: it moves on the map
    page.wait_for_function(
        "x => Math.abs(Number(document.querySelector('#map .ent[data-id=villager]')"
        ".getAttribute('data-x')) - x) > 1.5",
        arg=start,
        timeout=15_000,
    )
    # speech bubbles, a tool call with its result, the gate, statuses, counters
    page.wait_for_selector(".bubble[data-npc=guard]", state="attached")
    page.wait_for_selector("#log li.call.ok[data-cap=openGate]", state="attached")
    page.wait_for_selector("#map .gate[data-open=true]", state="attached")
    page.wait_for_selector("#log li.call[data-cap=follow]", state="attached")
    assert "oak" in (page.text_content(".card[data-npc=guard] .said") or "").lower() or (
        "gate" in (page.text_content(".card[data-npc=guard] .said") or "").lower()
    )
    assert page.locator(".card[data-npc=villager] .badge").count() == 1
    assert int(page.text_content("#count-calls b") or "0") >= 2
    assert int(page.text_content("#count-lines b") or "0") >= 3
    # the verdict of the scenario arrives, then the run says it is over
    page.wait_for_selector("#banner.passed", timeout=20_000)
    assert page.locator(".assert").count() >= 1
    page.wait_for_selector("#conn.done", timeout=20_000)
    shot = tmp_path / "viewer.png"
    page.screenshot(path=str(shot))
    target = os.environ.get("NPC_VIEWER_SCREENSHOT")
    if target:
        shutil.copyfile(shot, REPO / target)
    page.close()
    assert proc.wait(30) == 0
    assert problems == []


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def static_site(web_modules: Path) -> Iterator[str]:
    """samples/web (the demo page, npc-bridge.js, node_modules) over HTTP on loopback."""
    handler = functools.partial(_Quiet, directory=str(WEB))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_js_client_in_a_page_completes_a_guard_turn(
    browser: Any, static_site: str, tmp_path: Path
) -> None:
    project = _project(tmp_path, origins=[static_site])
    token = "page-token"
    cmd = [sys.executable, "-m", "runtime.cli", "serve", str(project), "--port", "0"]
    cmd += ["--no-http", "--model", "offline", "--db", str(tmp_path / "npc.sqlite3")]
    cmd += ["--log-level", "WARNING", "--viewer", "0"]
    env = {**os.environ, "NPC_BRIDGE_TOKEN": token}
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, env=env)
    try:
        bridge = read_until(proc, r"bridge (ws://\S+)").group(1)
        viewer_url = read_until(proc, r"viewer at (http://\S+)").group(1)
        viewer = browser.new_page()
        viewer.goto(viewer_url)
        viewer.wait_for_selector("#conn.live")
        page = browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.goto(f"{static_site}/index.html?token={token}")
        page.fill("#url", bridge)
        page.click("#connect")
        page.wait_for_selector("#say:not([disabled])")
        assert "connected" in (page.text_content("#conn") or "")
        page.fill("#line", "Evening, guard. The password is oak.")
        page.click("#say")
        page.wait_for_function("document.querySelector('#gate').textContent === 'open'")
        page.wait_for_function(
            "[...document.querySelectorAll('#log p.guard')]"
            ".some(p => /gate is open/i.test(p.textContent))"
        )
        page.wait_for_function("window.bridge.statuses.get('guard-1') === 'idle'")
        assert page.evaluate("window.bridge.executions") == 1
        assert "openGate" not in page.evaluate("window.bridge.welcome.missing")
        assert problems == []
        # the viewer of npc serve saw the same turn: the NPC, its speech, the call, the status
        viewer.wait_for_selector(".card[data-npc=guard-1]", state="attached")
        viewer.wait_for_selector("#log li.call.ok[data-cap=openGate]", state="attached")
        viewer.wait_for_function(
            "/gate is open/i.test("
            "document.querySelector('.card[data-npc=guard-1] .said').textContent)"
        )
        assert viewer.text_content(".card[data-npc=guard-1] .badge") == "idle"
        assert int(viewer.text_content("#count-turns b") or "0") >= 1
        assert viewer.locator("#log li.heard").count() >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
