"""npcagent's headless game: a simulated world that connects to the runtime over the real bridge.

Layers, each usable alone:

- ``sim.world_file`` / ``sim.world``: the world as a sans-I/O state machine over simulated time
  (no asyncio), loaded from ``world.toml``.
- ``sim.scenario``: scenario files (set-up, player script, duration, assertions) and their checks.
- ``sim.transcript``: the JSONL transcript writer (flushed line by line; a killed run keeps a
  valid prefix).
- ``sim.runner``: the async runner joining a world to a bridge through ``bridge.GameClient``.
- ``sim.report``: ``summary.json`` and the self-contained ``report.html``.

Exception tree::

    SimError                 base of everything raised here
    ├── SimFileError         a world or scenario file is invalid (``problems``: file, line, field)
    └── SimRunError          the run could not go on (bridge refused or lost for good)

Game-rule failures (walking out of bounds, giving what one does not hold) are data, not
exceptions: ``ActionFailed`` results sent back to the model.
"""

from __future__ import annotations

from sim.errors import SimError, SimFileError, SimRunError
from sim.report import render_html, summarize, write_reports
from sim.runner import WORLD_CAPABILITIES, SimProgress, SimResult, run_world
from sim.scale import scale_world
from sim.scenario import AssertionResult, Scenario, evaluate, find_scenarios, load_scenario
from sim.transcript import TIMING_FIELDS, TranscriptWriter, read_transcript, strip_timing
from sim.world import ActionDone, ActionFailed, Output, Perception, World, WorldNote
from sim.world_file import WorldSpec, load_world, world_from_dict

__all__ = [
    "TIMING_FIELDS",
    "WORLD_CAPABILITIES",
    "ActionDone",
    "ActionFailed",
    "AssertionResult",
    "Output",
    "Perception",
    "Scenario",
    "SimError",
    "SimFileError",
    "SimProgress",
    "SimResult",
    "SimRunError",
    "TranscriptWriter",
    "World",
    "WorldNote",
    "WorldSpec",
    "evaluate",
    "find_scenarios",
    "load_scenario",
    "load_world",
    "read_transcript",
    "render_html",
    "run_world",
    "scale_world",
    "strip_timing",
    "summarize",
    "world_from_dict",
    "write_reports",
]
