"""The conformance kit grades the reference GameClient harness as passing and a broken
game as failing exactly the checks its faults break; the CLI reports and exits accordingly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from bridge import BridgeConfig
from bridge.conformance import CHECKS, ConformanceKit, ConformanceReport
from tests.engines.kit_games import (
    BrokenGame,
    profile_client,
)

ALL = tuple(key for key, _ in CHECKS)
TIMEOUT = 1.0


async def grade(
    game: Callable[[str], Awaitable[Any]], *, token: str | None = None, wait_s: float = 10.0
) -> ConformanceReport:
    """Run the kit on a free port and the game against it; return the report."""
    kit = ConformanceKit(BridgeConfig(port=0, token=token), timeout_s=TIMEOUT, sleep_ms=400)
    url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    run = asyncio.ensure_future(kit.run(wait_s=wait_s, on_listening=url.set_result))
    game_task = asyncio.ensure_future(game(await url))
    try:
        async with asyncio.timeout(30):
            report = await run
    finally:
        game_task.cancel()
        with contextlib.suppress(BaseException):
            await game_task
    return report


async def reference(url: str, token: str | None = None) -> None:
    client, finished = profile_client(url, token=token)
    try:
        await client.connect()
        await finished.wait()
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_reference_game_client_passes_every_check() -> None:
    report = await grade(reference)
    assert report.failed == (), report.render()
    assert report.passed
    assert [c.key for c in report.checks] == list(ALL)
    assert report.game == "python-harness"
    assert "PASSED" in report.render()


@pytest.mark.asyncio
async def test_token_in_hello_is_accepted() -> None:
    report = await grade(lambda url: reference(url, token="s3cret"), token="s3cret")
    assert report.passed, report.render()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("faults", "failing"),
    [
        ({"executes_resent_twice": True}, {"resend"}),
        ({"ignores_unknown": True}, {"unknown"}),
        ({"text_frames": True}, {"events", "close"}),
        ({"ignores_cancel": True}, {"cancel"}),
        ({"lossy_floats": True}, {"call"}),
        (
            {"executes_resent_twice": True, "ignores_unknown": True, "text_frames": True},
            {"resend", "unknown", "events", "close"},
        ),
        ({}, set()),
    ],
)
async def test_broken_game_fails_exactly_its_checks(
    faults: dict[str, bool], failing: set[str]
) -> None:
    report = await grade(lambda url: BrokenGame(url, **faults).run())
    assert set(report.failed) == failing, report.render()
    by_key = {c.key: c for c in report.checks}
    if "resend" in failing:
        assert "executed twice" in by_key["resend"].got
    if "unknown" in failing:
        assert "no answer within" in by_key["unknown"].got
    if "events" in failing:
        assert "1003" in by_key["events"].got
        assert by_key["close"].status == "not run"
    if "cancel" in failing:
        assert "still completed" in by_key["cancel"].got
    if "call" in failing:
        assert "expected float 3.0, got int 3" in by_key["call"].got


@pytest.mark.asyncio
async def test_no_game_fails_handshake_and_runs_nothing_else() -> None:
    async def nobody(url: str) -> None:
        await asyncio.sleep(10)

    report = await grade(nobody, wait_s=0.3)
    assert report.failed == ALL
    assert report.checks[0].status == "fail"
    assert "no game connected" in report.checks[0].got
    assert {c.status for c in report.checks[1:]} == {"not run"}


@pytest.mark.asyncio
async def test_refused_handshakes_are_diagnosed() -> None:
    async def no_subprotocol(url: str) -> None:
        with contextlib.suppress(InvalidStatus):
            async with connect(url, proxy=None):
                pass
        with contextlib.suppress(InvalidStatus):
            headers = {"Authorization": "Bearer wrong"}
            sub = [Subprotocol("npc-bridge.v1")]
            async with connect(url, subprotocols=sub, additional_headers=headers, proxy=None):
                pass
        await asyncio.sleep(10)

    report = await grade(no_subprotocol, token="right", wait_s=1.0)
    assert "HTTP 400, 401" in report.checks[0].got, report.render()


def test_report_json_shape() -> None:
    report = ConformanceReport("ws://x", "g", "s", ())
    assert not report.passed  # an empty report proves nothing
    assert report.to_dict() == {
        "url": "ws://x",
        "game": "g",
        "session": "s",
        "passed": False,
        "checks": [],
    }


def _cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "bridge", "conformance", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _url_from(stream: Any) -> str:
    line = await asyncio.to_thread(stream.readline)
    match = re.search(r"ws://\S+", line)
    assert match, line
    return match.group(0)


@pytest.mark.asyncio
async def test_cli_json_report_and_exit_0_for_a_conforming_game() -> None:
    proc = _cli("--timeout", "2", "--wait", "20", "--json")
    try:
        url = await _url_from(proc.stderr)
        await reference(url)
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    report = json.loads(out)
    assert report["passed"] is True
    assert [c["key"] for c in report["checks"]] == list(ALL)
    assert "connected" in err


@pytest.mark.asyncio
async def test_cli_human_report_and_exit_1_for_a_broken_game() -> None:
    proc = _cli("--timeout", "1", "--wait", "20")
    try:
        url = await _url_from(proc.stdout)
        await BrokenGame(url, executes_resent_twice=True).run()
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 1, out + err
    assert re.search(r"FAIL\s+resend", out), out
    assert re.search(r"PASS\s+unknown", out), out
    assert "expected:" in out
    assert "got:" in out
    assert "8/9 checks passed: FAILED" in out


def test_cli_usage_errors_exit_2() -> None:
    proc = _cli("--timeout", "0")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "--timeout" in err
