"""Transcript durability (SIGKILL mid-run) and the reports built from records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from sim.report import percentile, render_html, summarize, write_reports
from sim.transcript import TranscriptWriter, read_transcript, strip_timing
from sim.world import World

REPO = Path(__file__).resolve().parents[2]


def test_sigkill_leaves_a_valid_prefix(tmp_path: Path) -> None:
    path = tmp_path / "transcript.jsonl"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from sim.transcript import TranscriptWriter
        w = TranscriptWriter(Path({str(path)!r}))
        i = 0
        while True:
            w.write({{"type": "event", "i": i, "data": {{"text": "ünïcode " * (i % 50)}}}})
            i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_size > 200_000:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the writer produced nothing")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    assert lines[-1] == b""  # every write ends a line: nothing torn
    records = [json.loads(line) for line in lines[:-1]]
    assert [r["i"] for r in records] == list(range(len(records)))
    assert len(records) > 100
    assert read_transcript(path) == records


def test_writer_stamps_and_cleans(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TranscriptWriter(path, clock=lambda: 1.5) as w:
        w.write({"type": "turn", "npc": "guard", "model_ms": 12.0, "tokens": 40})
        w.write({"type": "odd", "t": 2, "x": float("nan"), "b": b"\x00", "s": {1, 2}})
    first, second = read_transcript(path)
    assert first["t"] == 1.5
    assert strip_timing(first) == {"type": "turn", "npc": "guard", "tokens": 40, "t": 1.5}
    assert second["x"] == "nan"
    assert second["b"] == "00"
    assert w.tokens == 40
    assert w.by_type["turn"] == 1
    path.write_bytes(path.read_bytes() + b'{"type": "torn"')
    assert len(read_transcript(path)) == 2


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0


class _Checker(HTMLParser):
    """Fails on mis-nested or unclosed tags (void elements excepted)."""

    VOID = frozenset({"meta", "br", "img", "hr", "input", "link"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack, f"</{tag}> with nothing open"
        assert self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1]}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _records(world: World) -> list[dict[str, Any]]:
    evil = '<script>alert("x")</script> & </td>'
    return [
        {
            "type": "run",
            "t": 0,
            "world": "test",
            "bounds": world.spec.world.bounds.model_dump(),
            "locations": [loc.model_dump() for loc in world.spec.location],
            "positions": {
                w: {"x": world.position(w)[0], "z": world.position(w)[1]} for w in world.entities
            },
        },
        {
            "type": "event",
            "t": 1,
            "npc": "guard",
            "kind": "heard",
            "data": {"speaker": "player", "text": evil},
        },
        {
            "type": "turn",
            "npc": "guard",
            "model_ms": 120.0,
            "first_speech_ms": 40.0,
            "prompt_tokens": 100,
            "completion_tokens": 20,
        },
        {"type": "line", "t": 1.2, "npc": "guard", "text": evil, "reason": "done"},
        {
            "type": "call",
            "t": 1.3,
            "id": "c1",
            "npc": "guard",
            "cap": "openGate",
            "args": {},
            "at": {"x": 0, "z": 40},
        },
        {
            "type": "result",
            "t": 1.3,
            "id": "c1",
            "npc": "guard",
            "cap": "openGate",
            "ok": True,
            "data": {},
            "tool_ms": 1.5,
        },
        {
            "type": "world",
            "t": 2,
            "kind": "move",
            "who": "merchant",
            "x": 10,
            "z": 0,
            "phase": "start",
        },
        {
            "type": "world",
            "t": 5,
            "kind": "move",
            "who": "merchant",
            "x": 10,
            "z": 4.5,
            "phase": "stop",
        },
        {
            "type": "call",
            "t": 5,
            "id": "c2",
            "npc": "merchant",
            "cap": "giveItem",
            "args": {"item": "pear", "to": evil},
            "at": {"x": 10, "z": 4.5},
        },
        {
            "type": "result",
            "t": 5,
            "id": "c2",
            "npc": "merchant",
            "cap": "giveItem",
            "ok": False,
            "error": {"code": "NOT_HELD", "message": evil},
            "tool_ms": 0.5,
        },
        {"type": "end", "t": 6, "wall_s": 0.2, "passed": False},
    ]


def test_report_is_well_formed_escaped_and_has_the_map(tmp_path: Path, world: World) -> None:
    world.start("c1", "guard", "openGate", {})
    records = _records(world)
    assertions = [{"name": "never <openGate>", "passed": False, "detail": "openGate called 1x"}]
    summary = write_reports(tmp_path, records, world.snapshot(), assertions, {"scenario": "x & y"})
    assert summary["passed"] is False
    assert summary["counts"]["calls"] == 2
    assert summary["errors"]["by_kind"] == {"tool:NOT_HELD": 1}
    assert summary["latency_ms"]["model"]["p50"] == 120.0
    assert summary["latency_ms"]["first_speech"]["p95"] == 40.0
    assert summary["latency_ms"]["tool_by_cap"]["openGate"]["n"] == 1
    assert summary["tokens"] == {"prompt": 100, "completion": 20, "total": 120}
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary))

    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    assert "script" not in checker.tags  # the evil text stayed text
    assert '<script>alert("x")</script> & </td>' in "".join(checker.text)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    start, end = page.index("<svg"), page.index("</svg>") + len("</svg>")
    svg = ET.fromstring(page[start:end])
    ns = "{http://www.w3.org/2000/svg}"
    assert svg.tag == f"{ns}svg"
    assert len(svg.findall(f"{ns}polyline")) == 1  # the merchant's walk
    marks = svg.findall(f"{ns}rect[@class]")
    assert {m.get("class") for m in marks} == {"capability", "capability failed"}
    assert 'class="fail"' in page


def test_html_without_scenario_or_turns(world: World) -> None:
    summary = summarize([], world.snapshot())
    assert summary["passed"] is None
    assert summary["latency_ms"]["model"] == {"n": 0, "p50": None, "p95": None, "max": None}
    page = render_html(summary, [])
    checker = _Checker()
    checker.feed(page)
    assert checker.stack == []
    assert "<svg" in page


def test_public_api_is_explicit() -> None:
    import sim

    assert sorted(sim.__all__) == sorted(set(sim.__all__))
    for name in sim.__all__:
        assert hasattr(sim, name), name
