"""Reports of a run: ``summary.json`` (numbers) and ``report.html`` (one self-contained page).

Both are computed from transcript records and the world's end state only, so a report can be
rebuilt from a saved ``transcript.jsonl``. The page has no scripts, fonts or images to fetch:
an inline SVG map and tables, every text escaped.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

__all__ = ["percentile", "render_html", "summarize", "write_reports"]

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
_MAX_DIALOGUE = 400  # rows per NPC in the page; the transcript has everything


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(ordered[rank - 1], 3)


def _stats(values: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": round(max(values), 3) if values else None,
    }


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def summarize(
    records: Sequence[Mapping[str, Any]],
    end: Mapping[str, Any],
    assertions: Iterable[Mapping[str, Any]] = (),
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Counts, latencies (p50/p95 of model, first speech, tool), tokens, errors by kind,
    scenario results. Fields the runtime pushes (``turn`` records) are optional."""
    by_type: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        by_type[str(r.get("type"))].append(r)
    results = by_type["result"]
    errors: Counter[str] = Counter()
    for r in results:
        if not r.get("ok") and not r.get("unfinished"):
            err = r.get("error")
            code = err.get("code") if isinstance(err, Mapping) else None
            errors[f"tool:{code or 'UNKNOWN'}"] += 1
    for r in by_type["error"]:
        errors[str(r.get("kind") or r.get("code") or "error")] += 1
    for r in by_type["turn"]:
        if r.get("ok") is False:
            errors[f"turn:{r.get('error') or 'failed'}"] += 1
    for r in by_type["world"]:
        if r.get("kind") in ("unheard", "script_failed"):
            errors[f"script:{r.get('kind')}"] += 1

    def collect(rs: Iterable[Mapping[str, Any]], key: str) -> list[float]:
        return [v for v in (_num(r.get(key)) for r in rs) if v is not None]

    tool_by_cap: dict[str, list[float]] = defaultdict(list)
    for r in results:
        ms = _num(r.get("tool_ms"))
        if ms is not None:
            tool_by_cap[str(r.get("cap"))].append(ms)
    first_speech = collect(by_type["turn"], "first_speech_ms") or collect(
        by_type["line"], "reaction_ms"
    )
    tokens = {"prompt": 0, "completion": 0, "total": 0}
    for r in by_type["turn"]:
        for key, field in (("prompt", "prompt_tokens"), ("completion", "completion_tokens")):
            tokens[key] += int(_num(r.get(field)) or 0)
        total = _num(r.get("tokens"))
        tokens["total"] += int(total) if total is not None else 0
    if tokens["total"] == 0:
        tokens["total"] = tokens["prompt"] + tokens["completion"]
    assertion_list = [dict(a) for a in assertions]
    end_record = next((r for r in reversed(records) if r.get("type") == "end"), None)
    return {
        **dict(meta or {}),
        "passed": all(a.get("passed") for a in assertion_list) if assertion_list else None,
        "sim_seconds": end.get("t"),
        "wall_s": end_record.get("wall_s") if end_record else None,
        "counts": {
            "records": len(records),
            "events": len(by_type["event"]),
            "events_by_kind": dict(Counter(str(r.get("kind")) for r in by_type["event"])),
            "calls": len(by_type["call"]),
            "calls_by_cap": dict(Counter(str(r.get("cap")) for r in by_type["call"])),
            "results_ok": sum(1 for r in results if r.get("ok")),
            "results_failed": sum(
                1 for r in results if not r.get("ok") and not r.get("unfinished")
            ),
            "unfinished": sum(1 for r in results if r.get("unfinished")),
            "cancels": len(by_type["cancel"]),
            "lines": len(by_type["line"]),
            "turns": len(by_type["turn"]),
        },
        "tokens": tokens,
        "latency_ms": {
            "model": _stats(collect(by_type["turn"], "model_ms")),
            "first_speech": _stats(first_speech),
            "tool": _stats([v for vs in tool_by_cap.values() for v in vs]),
            "tool_by_cap": {cap: _stats(vs) for cap, vs in sorted(tool_by_cap.items())},
        },
        "errors": {"total": sum(errors.values()), "by_kind": dict(errors.most_common())},
        "assertions": assertion_list,
        "end_state": dict(end),
    }


# --------------------------------------------------------------------------------- HTML


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _paths(records: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    paths: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in records:
        if r.get("type") == "run":
            for who, pos in (r.get("positions") or {}).items():
                x, z = _num(pos.get("x")), _num(pos.get("z"))
                if x is not None and z is not None:
                    paths[str(who)].append((x, z))
        elif r.get("type") == "world" and r.get("kind") == "move":
            x, z = _num(r.get("x")), _num(r.get("z"))
            if x is not None and z is not None:
                pts = paths[str(r.get("who"))]
                if not pts or pts[-1] != (x, z):
                    pts.append((x, z))
    return paths


def _svg(
    records: Sequence[Mapping[str, Any]], end: Mapping[str, Any], colours: Mapping[str, str]
) -> str:
    run = next((r for r in records if r.get("type") == "run"), {})
    b = run.get("bounds") or {"min_x": -100, "max_x": 100, "min_z": -100, "max_z": 100}
    min_x, max_x = float(b["min_x"]), float(b["max_x"])
    min_z, max_z = float(b["min_z"]), float(b["max_z"])
    width = 760.0
    scale = width / (max_x - min_x)
    height = (max_z - min_z) * scale

    def px(x: float, z: float) -> str:  # north (+z) is up
        return f"{(x - min_x) * scale:.1f},{(max_z - z) * scale:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="map" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        'aria-label="World map">',
        f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" '
        'fill="#f4f1e8" stroke="#999"/>',
    ]
    for loc in run.get("locations") or []:
        p = px(float(loc["x"]), float(loc["z"])).split(",")
        parts.append(
            f'<g class="location"><circle cx="{p[0]}" cy="{p[1]}" r="4" fill="#bbb"/>'
            f'<text x="{float(p[0]) + 6:.1f}" y="{float(p[1]) - 6:.1f}" font-size="11" '
            f'fill="#555">{_e(loc["name"])}</text></g>'
        )
    for gate in end.get("gates") or []:
        g = px(float(gate["x"]), float(gate["z"])).split(",")
        colour = "#2ca02c" if gate.get("open") else "#8b0000"
        state = "open" if gate.get("open") else "closed"
        parts.append(
            f'<g class="gate"><rect x="{float(g[0]) - 12:.1f}" y="{float(g[1]) - 3:.1f}" '
            f'width="24" height="6" fill="{colour}"><title>gate ({state})</title></rect></g>'
        )
    for who, pts in _paths(records).items():
        colour = colours.get(who, "#444")
        if len(pts) > 1:
            parts.append(
                f'<polyline class="path" points="{" ".join(px(x, z) for x, z in pts)}" '
                f'fill="none" stroke="{colour}" stroke-width="2" stroke-opacity="0.7">'
                f"<title>{_e(who)}</title></polyline>"
            )
        last = px(*pts[-1]).split(",")
        parts.append(
            f'<g class="entity"><circle cx="{last[0]}" cy="{last[1]}" r="6" fill="{colour}"/>'
            f'<text x="{float(last[0]) + 8:.1f}" y="{float(last[1]) + 4:.1f}" font-size="12" '
            f'font-weight="bold" fill="{colour}">{_e(who)}</text></g>'
        )
    outcome = {r.get("id"): r for r in records if r.get("type") == "result"}
    for r in records:
        if r.get("type") != "call" or not isinstance(r.get("at"), Mapping):
            continue
        x, z = _num(r["at"].get("x")), _num(r["at"].get("z"))
        if x is None or z is None:
            continue
        res = outcome.get(r.get("id"))
        ok = bool(res and res.get("ok"))
        p = px(x, z).split(",")
        colour = colours.get(str(r.get("npc")), "#444")
        note = "ok" if ok else "failed" if res else "no result"
        parts.append(
            f'<rect class="capability{"" if ok else " failed"}" x="{float(p[0]) - 3.5:.1f}" '
            f'y="{float(p[1]) - 3.5:.1f}" width="7" height="7" '
            f'fill="{"#fff" if ok else "#ffd0d0"}" '
            f'stroke="{colour}" stroke-width="1.5"><title>{_e(r.get("npc"))}: '
            f"{_e(r.get('cap'))} at t={_e(_fmt(r.get('t')))} ({note})</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _dialogue_by_npc(
    records: Sequence[Mapping[str, Any]],
) -> dict[str, list[tuple[Any, str, str, bool]]]:
    """Per NPC, in order: what it heard and saw, what it said, what it did (failed: True)."""
    rows: dict[str, list[tuple[Any, str, str, bool]]] = defaultdict(list)
    results = {r.get("id"): r for r in records if r.get("type") == "result"}
    for r in records:
        kind = r.get("type")
        if kind not in ("event", "line", "call"):
            continue
        npc = str(r.get("npc"))
        if kind == "event" and r.get("kind") == "heard":
            data = r.get("data") or {}
            rows[npc].append(
                (r.get("t"), f"heard {data.get('speaker')}", str(data.get("text")), False)
            )
        elif kind == "event" and r.get("kind") == "saw":
            rows[npc].append((r.get("t"), "saw", str((r.get("data") or {}).get("what")), False))
        elif kind == "line":
            rows[npc].append((r.get("t"), "said", str(r.get("text")), False))
        elif kind == "call":
            res = results.get(r.get("id"))
            failed = bool(res) and not res.get("ok") and not res.get("unfinished") if res else False
            outcome = ""
            if res and not res.get("ok"):
                err = res.get("error") or {}
                outcome = f" → {err.get('code')}: {err.get('message')}"
            args = json.dumps(r.get("args"), ensure_ascii=False)
            rows[npc].append((r.get("t"), f"{r.get('cap')}", f"{args}{outcome}", failed))
    return rows


def render_html(summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> str:
    """The report page: map, results, timings, dialogue per NPC, failures highlighted."""
    end: Mapping[str, Any] = summary.get("end_state") or {}
    entities: Mapping[str, Any] = end.get("entities") or {}
    colours = {who: _PALETTE[i % len(_PALETTE)] for i, who in enumerate(entities)}
    title = f"npcagent sim — {summary.get('scenario') or summary.get('world') or 'run'}"
    passed = summary.get("passed")
    verdict = "no assertions" if passed is None else "PASSED" if passed else "FAILED"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"/>',
        f"<title>{_e(title)}</title>",
        "<style>body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:left;vertical-align:top}th{background:#eee}"
        ".fail{background:#ffd6d6}.pass{background:#dff5df}h2{margin-top:28px}"
        ".verdict{font-weight:bold;padding:2px 8px}.muted{color:#777}</style>",
        "</head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p><span class="verdict {"fail" if passed is False else "pass"}">{_e(verdict)}</span> '
        f"simulated {_e(_fmt(summary.get('sim_seconds')))} s in "
        f"{_e(_fmt(summary.get('wall_s')))} s wall · "
        f"{_e(summary.get('counts', {}).get('calls', 0))} calls · "
        f"{_e(summary.get('counts', {}).get('lines', 0))} lines spoken · "
        f"{_e(summary.get('errors', {}).get('total', 0))} errors</p>",
        "<h2>Map</h2>",
        _svg(records, end, colours),
        '<p class="muted">North is up. Lines: paths walked; squares: capabilities used '
        "(red: failed; hover for details).</p>",
    ]
    assertions = summary.get("assertions") or []
    if assertions:
        out.append(
            "<h2>Scenario assertions</h2><table><tr><th>assertion</th><th>result</th>"
            "<th>what happened</th></tr>"
        )
        for a in assertions:
            ok = bool(a.get("passed"))
            out.append(
                f'<tr class="{"pass" if ok else "fail"}"><td>{_e(a.get("name"))}</td>'
                f"<td>{'pass' if ok else 'FAIL'}</td><td>{_e(a.get('detail'))}</td></tr>"
            )
        out.append("</table>")
    out.append(
        "<h2>Timings (ms)</h2><table><tr><th>measure</th><th>n</th><th>p50</th>"
        "<th>p95</th><th>max</th></tr>"
    )
    lat: Mapping[str, Any] = summary.get("latency_ms") or {}
    rows = [(k, lat.get(k) or {}) for k in ("model", "first_speech", "tool")]
    rows += [(f"tool: {cap}", s) for cap, s in (lat.get("tool_by_cap") or {}).items()]
    for name, s in rows:
        out.append(
            f"<tr><td>{_e(name)}</td><td>{_e(_fmt(s.get('n')))}</td><td>{_e(_fmt(s.get('p50')))}</td>"
            f"<td>{_e(_fmt(s.get('p95')))}</td><td>{_e(_fmt(s.get('max')))}</td></tr>"
        )
    out.append("</table>")
    errors: Mapping[str, Any] = (summary.get("errors") or {}).get("by_kind") or {}
    if errors:
        out.append("<h2>Errors</h2><table><tr><th>kind</th><th>count</th></tr>")
        out += [
            f'<tr class="fail"><td>{_e(k)}</td><td>{_e(v)}</td></tr>' for k, v in errors.items()
        ]
        out.append("</table>")
    out.append("<h2>Dialogue per NPC</h2>")
    dialogue = _dialogue_by_npc(records)
    for who, ent in entities.items():
        if ent.get("kind") != "npc":
            continue
        rows_d = dialogue.get(who, [])
        out.append(
            f'<h3 style="color:{colours.get(who, "#222")}">{_e(who)}</h3>'
            f'<p class="muted">holding {_e(", ".join(ent.get("holding") or []) or "nothing")}, '
            f"gold {_e(ent.get('gold'))}</p>"
        )
        if not rows_d:
            out.append('<p class="muted">(nothing heard or said)</p>')
            continue
        out.append("<table><tr><th>t (s)</th><th>what</th><th>text</th></tr>")
        for t, what, text, failed in rows_d[:_MAX_DIALOGUE]:
            cls = ' class="fail"' if failed else ""
            out.append(
                f"<tr{cls}><td>{_e(_fmt(t))}</td><td>{_e(what)}</td><td>{_e(text)}</td></tr>"
            )
        out.append("</table>")
        if len(rows_d) > _MAX_DIALOGUE:
            out.append(
                f'<p class="muted">… {len(rows_d) - _MAX_DIALOGUE} more rows '
                "in transcript.jsonl</p>"
            )
    out.append("</body></html>")
    return "\n".join(out)


def write_reports(
    directory: Path,
    records: Sequence[Mapping[str, Any]],
    end: Mapping[str, Any],
    assertions: Iterable[Mapping[str, Any]] = (),
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``summary.json`` and ``report.html`` next to the transcript; return the summary."""
    directory.mkdir(parents=True, exist_ok=True)
    summary = summarize(records, end, assertions, meta)
    (directory / "summary.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    (directory / "report.html").write_text(render_html(summary, records), encoding="utf-8")
    return summary
