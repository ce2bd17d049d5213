"""Headless scale: `npc sim` load runs with the offline model, as a user runs them.

Each measurement is a fresh `npc sim --npcs N --turns T` process (runtime, bridge server and
simulated world in one process, over loopback websockets), timed from the outside; peak RSS
comes from ``os.wait4``. Memory per NPC is the slope of peak RSS between the smallest and the
largest growth run, so the interpreter's fixed cost cancels out.

    .venv/bin/python bench/sim_scale.py                  # target + growth (several minutes)
    .venv/bin/python bench/sim_scale.py --quick          # smaller numbers, for a smoke check

Design target (design.md section 6): 100 NPCs x 50 turns in <= 60 s wall on the 2-core VM.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run(npcs: int, turns: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report"
        cmd = [
            sys.executable,
            "-m",
            "runtime.cli",
            "sim",
            str(REPO / "samples" / "village"),
            "--npcs",
            str(npcs),
            "--turns",
            str(turns),
            "--quiet",
            "--report",
            str(report),
        ]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out = proc.stdout.read().decode() if proc.stdout else ""
        err = proc.stderr.read().decode() if proc.stderr else ""
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise SystemExit(f"npc sim failed ({code}):\n{out}\n{err}")
        summary = json.loads((report / "summary.json").read_text())
    counts = summary["counts"]
    return {
        "npcs": npcs,
        "turns_per_npc": turns,
        "wall_s": round(wall, 2),
        "run_wall_s": summary.get("wall_s"),
        "sim_s": summary.get("sim_seconds"),
        "turns": counts["turns"],
        "calls": counts["calls"],
        "events": counts["events"],
        "lines": counts["lines"],
        "records": counts["records"],
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "model_p50_ms": summary["latency_ms"]["model"]["p50"],
        "tool_p50_ms": summary["latency_ms"]["tool"]["p50"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small numbers (smoke check)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    target = (20, 10) if args.quick else (100, 50)
    growth = [(10, 5), (100, 5)] if args.quick else [(10, 5), (100, 5), (1000, 5)]
    results: dict[str, Any] = {"target": run(*target), "growth": [run(n, t) for n, t in growth]}
    small, large = results["growth"][0], results["growth"][-1]
    per_npc_kb = (
        (large["peak_rss_mb"] - small["peak_rss_mb"]) * 1024 / (large["npcs"] - small["npcs"])
    )
    results["memory_per_npc_kb"] = round(per_npc_kb, 1)
    t = results["target"]
    print(
        f"target: {t['npcs']} NPCs x {t['turns_per_npc']} turns: {t['wall_s']} s wall "
        f"({t['run_wall_s']} s in the run), {t['turns']} turns, {t['calls']} calls, "
        f"{t['events']} events, peak RSS {t['peak_rss_mb']} MB"
    )
    print("growth (5 turns per NPC):")
    for g in results["growth"]:
        print(
            f"  {g['npcs']:>5} NPCs: {g['wall_s']:>7} s wall, {g['turns']:>6} turns, "
            f"peak RSS {g['peak_rss_mb']} MB"
        )
    print(f"memory per NPC: {results['memory_per_npc_kb']} KB (peak RSS slope)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
