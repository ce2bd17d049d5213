"""samples/web/npc-bridge.js under Node's test runner: the client's protocol duties against a
scripted fake runtime, a guard turn and a resume against a real `npc serve`, and the
conformance kit (`npc bridge conformance`) grading it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_node_suite(node: str, web_modules: Path) -> None:
    web = web_modules.parent
    tests = sorted(str(p.relative_to(web)) for p in (web / "test").glob("*.test.js"))
    assert tests, "no node tests found"
    env = {**os.environ, "NPC_PYTHON": sys.executable}
    done = subprocess.run(
        [node, "--test", *tests],
        cwd=web,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    assert "# fail 0" in report
    # every file ran and nothing was skipped silently (the kit exists now)
    assert "# skipped 0" in report, report[-3000:]
