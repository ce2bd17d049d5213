"""``npc sim [DIR]``: run a project headless. The simulated world (``sim``) is a real game
on the real bridge; the runtime serves it in the same process (or ``--bridge`` points at a
running ``npc serve``). Each run writes ``transcript.jsonl`` as it happens, then
``summary.json`` and ``report.html``.

What runs: ``--scenario NAME`` one scenario; ``--npcs``/``--turns`` a load run of the base
world with cloned NPCs, each talked to ``--turns`` times; otherwise every scenario of the
project (each in ``REPORT/<name>/``, with an index in ``REPORT/``), or the base world when the
project has no scenarios. Exit 0 when every scenario passed, 1 when one failed, 2 when the
project, world or scenario files are invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import secrets
import sys
import time
from collections.abc import Coroutine, Mapping
from html import escape
from pathlib import Path
from typing import Any

from bridge import BridgeServer
from capabilities import ProjectError
from runtime.offline.errors import OfflineConfigError
from runtime.offline.misbehaviour import Misbehaviour
from runtime.project import Project, load_project
from runtime.runtime import Runtime
from runtime.services import bridge_config, configure_logging
from runtime.store import MemoryStore, SQLiteStore, Store
from sim import SimError, SimFileError, World, WorldSpec, load_world, world_from_dict
from sim.report import write_reports
from sim.runner import SimProgress, SimResult, run_world
from sim.scale import scale_world
from sim.scenario import Scenario, find_scenarios, load_scenario
from sim.transcript import TranscriptWriter

__all__ = ["add_parser"]

_DEFAULT_PROJECT = Path(__file__).resolve().parents[1] / "samples" / "village"
_LOAD_LINES = (
    "Good day! What news?",
    "Oak.",
    "I'd like to buy an apple.",
    "Follow me, please.",
    "Have you seen anything strange today?",
    "Where is the well?",
)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="run NPCs headless against a simulated world; write a report",
        description=(
            "Run a project headless: a simulated world plays the game over the real bridge. "
            "With no options, every scenario of the project runs (samples/village by default)."
        ),
    )
    parser.add_argument("dir", nargs="?", help="project directory (default: samples/village)")
    parser.add_argument("--scenario", help="run one scenario (name of scenarios/NAME.toml)")
    parser.add_argument("--npcs", type=int, help="load run: clone the world's NPCs up to N")
    parser.add_argument("--turns", type=int, help="load run: turns per NPC (default 5)")
    parser.add_argument("--duration", type=float, help="simulated seconds to run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the offline model and clones")
    parser.add_argument("--model", help="model endpoint: offline, replay:PATH or a URL")
    parser.add_argument("--record", help="record all model traffic into this cassette (JSONL)")
    parser.add_argument("--replay", help="replay model traffic from this cassette")
    parser.add_argument("--concurrency", type=int, help="max concurrent model requests")
    parser.add_argument(
        "--misbehave",
        metavar="RATE[:KINDS]",
        help="make the offline model misbehave, e.g. 0.2 or 0.1:http_429,invalid_json",
    )
    parser.add_argument("--report", default="sim-report", help="report directory (sim-report)")
    parser.add_argument("--bridge", help="use a running `npc serve` at this ws:// URL")
    parser.add_argument("--token", help="bridge token for --bridge (default: $NPC_BRIDGE_TOKEN)")
    parser.add_argument(
        "--pace",
        choices=("lockstep", "realtime"),
        help="lockstep (default) or realtime (default with --live)",
    )
    parser.add_argument(
        "--live",
        nargs="?",
        const=8770,
        type=int,
        metavar="PORT",
        help="watch it in a browser: serve the live viewer on http://127.0.0.1:PORT "
        "(default 8770; 0 = any free port) while the run lasts; realtime pace",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        help="realtime pace: simulated seconds per wall second (default 1 with --live, else 20)",
    )
    parser.add_argument("--db", help="keep the runtime's SQLite history in this file")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


@dataclasses.dataclass
class _Plan:
    name: str
    world: WorldSpec
    scenario: Scenario | None
    duration: float | None
    stop_when_idle: float | None = None


def run(args: argparse.Namespace) -> int:
    configure_logging("WARNING")
    directory = Path(args.dir) if args.dir else _default_dir()
    # Paths on the command line are relative to where the user is, not to the project.
    for name in ("record", "replay", "db"):
        value = getattr(args, name)
        if value:
            setattr(args, name, str(Path(value).resolve()))
    if args.replay and (args.model or args.record):
        print("--replay cannot be combined with --model or --record", file=sys.stderr)
        return 2
    try:
        if args.misbehave:
            Misbehaviour.parse(args.misbehave)
        project = load_project(directory)
        plans = _plans(project, args)
    except (ProjectError, SimFileError) as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except (_UsageError, OfflineConfigError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.concurrency:
        model = project.config.model.model_copy(update={"max_concurrency": args.concurrency})
        config = project.config.model_copy(update={"model": model})
        project = dataclasses.replace(project, config=config)
    try:
        return asyncio.run(_run_plans(project, plans, args))
    except SimError as exc:
        print(f"npc sim: {exc}", file=sys.stderr)
        return 1


class _UsageError(Exception):
    pass


def _default_dir() -> Path:
    local = Path("samples/village")
    return local if (local / "npc.toml").is_file() else _DEFAULT_PROJECT


def _plans(project: Project, args: argparse.Namespace) -> list[_Plan]:
    scenarios = find_scenarios(project.root)
    world_file = project.root / "world.toml"
    if args.scenario:
        if args.scenario not in scenarios:
            known = ", ".join(scenarios) or "none"
            raise _UsageError(f"unknown scenario {args.scenario!r}; known: {known}")
        scenario = load_scenario(scenarios[args.scenario])
        return [_Plan(scenario.name, scenario.world, scenario, args.duration)]
    if not world_file.is_file():
        raise _UsageError(f"{world_file}: the project has no world.toml to simulate")
    base = load_world(world_file)
    if args.npcs is not None or args.turns is not None:
        world = _load_world(base, args.npcs, args.turns or 5, args.seed)
        turns = args.turns or 5
        duration = args.duration or 1 + turns * _GAP_S + 20
        return [_Plan("load", world, None, duration, stop_when_idle=5.0)]
    if scenarios and args.duration is None:
        return [
            _Plan(s.name, s.world, s, None)
            for s in (load_scenario(path) for path in scenarios.values())
        ]
    return [_Plan("world", base, None, args.duration)]


_GAP_S = 6.0


def _load_world(base: WorldSpec, npcs: int | None, turns: int, seed: int) -> WorldSpec:
    """Copies of the base world side by side (``sim.scale``) holding ``npcs`` NPCs, each with
    a visitor of its own who talks to it ``turns`` times, ``_GAP_S`` simulated seconds apart.
    The world's own script is replaced: a load run measures exactly ``npcs x turns`` lines."""
    if not base.npc:
        raise _UsageError("the world has no NPCs to clone")
    count = len(base.npc) if npcs is None else npcs
    if count < 1:
        raise _UsageError("--npcs must be at least 1")
    scaled = scale_world(base, count)
    data = scaled.model_dump(exclude_none=True)
    rules = scaled.world
    offset = random.Random(seed).randrange(len(_LOAD_LINES))
    players: list[dict[str, Any]] = []
    script: list[dict[str, Any]] = []
    for i, npc in enumerate(scaled.npc):
        x, z = scaled.place(npc)
        visitor = f"visitor-{npc.id}"
        near = min(1.5, rules.earshot / 2)
        vz = z - near if z - near >= rules.bounds.min_z else z + near
        players.append({"id": visitor, "x": x, "z": vz, "gold": 20})
        for k in range(turns):
            line = _LOAD_LINES[(offset + i + k) % len(_LOAD_LINES)]
            script.append({"at": 1 + k * _GAP_S, "player": visitor, "say": line, "to": npc.id})
    data["player"] = players
    data["script"] = script
    return world_from_dict(data, path="<load run>")


async def _run_plans(project: Project, plans: list[_Plan], args: argparse.Namespace) -> int:
    if args.live is None:
        return await _run_plans_reported(project, plans, args, None)
    from sim.live import start_viewer

    try:
        live = await start_viewer(args.live, mode="sim", title=f"npc sim {project.root.name}")
    except OSError as exc:
        print(f"npc sim: cannot serve the live viewer on port {args.live}: {exc}", file=sys.stderr)
        return 2
    print(f"npc sim: live viewer at {live.url}", flush=True)
    try:
        return await _run_plans_reported(project, plans, args, live)
    finally:
        live.feed.push({"type": "closing", "in_s": _LIVE_LINGER_S})
        await asyncio.sleep(_LIVE_LINGER_S)  # the page reads the end before the server goes
        await live.close()


_LIVE_LINGER_S = 3.0


def _pace(args: argparse.Namespace) -> tuple[Any, float]:
    """--live watches in realtime at 1x unless told otherwise; plain runs keep lockstep."""
    pace = args.pace or ("realtime" if args.live is not None else "lockstep")
    scale = args.time_scale or (1.0 if args.live is not None else 20.0)
    return pace, scale


async def _run_plans_reported(
    project: Project, plans: list[_Plan], args: argparse.Namespace, live: Any
) -> int:
    report = Path(args.report)
    several = len(plans) > 1
    combined = TranscriptWriter(report / "transcript.jsonl", keep=False) if several else None
    results: list[tuple[_Plan, SimResult, Path]] = []
    try:
        for plan in plans:
            folder = report / plan.name if several else report
            result = await _run_one(project, plan, folder, args, combined, live)
            results.append((plan, result, folder))
    finally:
        if combined is not None:
            combined.close()
    if several:
        _write_index(report, results)
    failed = [(plan, result) for plan, result, _ in results if result.passed is False]
    for plan, result, folder in results:
        verdict = {True: "passed", False: "FAILED", None: "ran"}[result.passed]
        print(
            f"{plan.name}: {verdict} in {result.sim_seconds:.1f} simulated s "
            f"({result.wall_s:.2f} s wall) -> {folder / 'report.html'}"
        )
        for assertion in result.failed:
            print(f"  failed: {assertion.name}: {assertion.detail}")
    return 1 if failed else 0


class _TeeWriter(TranscriptWriter):
    """A scenario's transcript that also feeds the combined one, tagged with its name."""

    def __init__(
        self, path: Path, combined: TranscriptWriter | None, name: str, live: Any = None
    ) -> None:
        super().__init__(path)
        self._combined, self._name, self._live = combined, name, live

    def write(self, record: Mapping[str, Any]) -> None:
        super().write(record)
        if self._combined is not None:
            self._combined.write({"scenario": self._name, **record})
        if self._live is not None:
            self._live.feed.push(record)


async def _run_one(
    project: Project,
    plan: _Plan,
    folder: Path,
    args: argparse.Namespace,
    combined: TranscriptWriter | None,
    live: Any = None,
) -> SimResult:
    transcript = _TeeWriter(folder / "transcript.jsonl", combined, plan.name, live)
    world = World(plan.world)
    transcript.clock = lambda: world.t
    pace, time_scale = _pace(args)
    tap = None
    if live is not None:
        from sim.live import SimTap

        tap = SimTap(live.feed, world, name=plan.name)
        duration = plan.duration or (plan.scenario.duration if plan.scenario else 60.0)
        tap.start(pace=pace, time_scale=time_scale, duration=duration)
    meta = {"scenario": plan.name, "project": str(project.root), "seed": args.seed}
    progress = None if args.quiet else _Progress(plan.name)
    base_url = f"replay:{args.replay}" if args.replay else args.model

    def play(bridge_url: str, token: str | None) -> Coroutine[Any, Any, SimResult]:
        return run_world(
            world,
            bridge_url=bridge_url,
            token=token,
            transcript=transcript,
            scenario=plan.scenario,
            duration=plan.duration,
            pace=pace,
            time_scale=time_scale,
            stop_when_idle=plan.stop_when_idle,
            triggers=_triggers(project),
            progress=progress,
            meta=meta,
        )

    try:
        if args.bridge:
            result = await play(args.bridge, args.token or bridge_config(project).token)
        else:
            store: Store = SQLiteStore(args.db) if args.db else MemoryStore()
            runtime = Runtime(
                project,
                store=store,
                base_url=base_url,
                record=args.record,
                seed=args.seed,
                misbehave=args.misbehave,
                on_record=transcript.write,
            )
            token = secrets.token_urlsafe(16)
            base = bridge_config(project, port=0)
            # The event rate limit and the outbox bound guard a runtime against a flooding or
            # stalled game; the in-process world is ours, and its perceptions and the speech
            # it receives grow with its NPCs, so those budgets do too.
            npcs = max(1, len(plan.world.npc))
            config = dataclasses.replace(
                base,
                token=token,
                events_per_s=max(base.events_per_s, 50.0 * npcs),
                event_burst=max(base.event_burst, 10 * npcs),
                max_outbox=max(base.max_outbox, 64 * npcs),
                id_seed=args.seed,  # same session and call ids run after run: replayable
            )
            try:
                async with BridgeServer(config, runtime) as server:
                    result = await play(server.url, token)
            finally:
                await runtime.aclose()
                await store.close()
    finally:
        if tap is not None:
            await tap.stop()
        transcript.close()
        if progress is not None:
            progress.done()
    write_reports(folder, result.records, result.end_state, result.assertion_records, result.meta)
    return result


def _triggers(project: Project) -> dict[str, list[str]]:
    return {cid: list(c.triggers) for cid, c in project.characters.items()}


class _Progress:
    """A live line on a terminal; a line every few seconds otherwise."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.shown = False

    def __call__(self, p: SimProgress) -> None:
        now = time.monotonic()
        if not self.tty and now - self.last < 5:
            return
        self.last = now
        width = 20
        filled = int(width * min(1.0, p.t / p.duration)) if p.duration else 0
        bar = "#" * filled + "-" * (width - filled)
        line = (
            f"{self.name} [{bar}] t={p.t:.0f}/{p.duration:.0f}s turns {p.turns} "
            f"calls {p.calls} lines {p.lines} errors {p.errors} tokens {p.tokens}"
        )
        if self.tty:
            sys.stderr.write("\r" + line[:120].ljust(120))
            self.shown = True
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty and self.shown:
            sys.stderr.write("\r" + " " * 120 + "\r")
            sys.stderr.flush()


def _write_index(report: Path, results: list[tuple[_Plan, SimResult, Path]]) -> None:
    """Top-level summary.json and report.html for a run of several scenarios."""
    scenarios = {}
    for plan, result, folder in results:
        summary = json.loads((folder / "summary.json").read_text("utf-8"))
        scenarios[plan.name] = {
            "passed": result.passed,
            "failed": [a.name for a in result.failed],
            "report": f"{plan.name}/report.html",
            "counts": summary.get("counts"),
            "latency_ms": summary.get("latency_ms"),
            "tokens": summary.get("tokens"),
            "errors": summary.get("errors"),
        }
    passed = [r.passed for _, r, _ in results if r.passed is not None]
    index = {"passed": all(passed) if passed else None, "scenarios": scenarios}
    (report / "summary.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    sections = []
    for plan, result, folder in results:
        page = (folder / "report.html").read_text("utf-8")
        start, end = page.find("<svg"), page.find("</svg>")
        svg = page[start : end + len("</svg>")] if start != -1 and end != -1 else ""
        verdict = {True: "passed", False: "FAILED", None: "ran"}[result.passed]
        failures = "".join(f"<li>{escape(a.name)}: {escape(a.detail)}</li>" for a in result.failed)
        sections.append(
            f'<section class="{verdict.lower()}"><h2>{escape(plan.name)}: {verdict}</h2>'
            f"<p>{result.sim_seconds:.1f} simulated s, {result.wall_s:.2f} s wall. "
            f'<a href="{escape(plan.name)}/report.html">Full report</a></p>'
            f"<ul>{failures}</ul>{svg}</section>"
        )
    html = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>npc sim: scenarios</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
        "section{border:1px solid #ccc;border-radius:6px;padding:1em;margin:1em 0}"
        "section.failed{border-color:#d62728;background:#fff5f5}"
        "section svg{max-width:36em;height:auto}"
        "</style></head><body><h1>npc sim: "
        f"{sum(1 for p in passed if p)}/{len(passed)} scenarios passed</h1>"
        + "".join(sections)
        + "</body></html>\n"
    )
    (report / "report.html").write_text(html, encoding="utf-8")
