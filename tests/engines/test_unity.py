"""The Unity C# client without Unity: compiled with Debian's mono `mcs` (the Unity-only
MonoBehaviour excluded) and run with `mono` against `npc serve` and the conformance kit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.engines.engine_tools import (
    REPO,
    conformance_kit,
    ensure_tool,
    finish,
    npc_serve,
    run,
)

UNITY = REPO / "samples" / "unity"
MONO_PACKAGES = ["mono-mcs", "mono-runtime"]


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Compile Runtime/*.cs + Harness/Harness.cs (warnings are errors) once per session."""
    mcs = ensure_tool("mcs", MONO_PACKAGES)
    mono = ensure_tool("mono", MONO_PACKAGES)
    if mcs is None or mono is None:
        pytest.skip("mono (mcs, mono) is not installed and `apt-get install` failed")
    sources = sorted(str(p) for p in (UNITY / "Runtime").glob("*.cs"))
    assert sources, "no C# sources"
    exe = tmp_path_factory.mktemp("unity") / "harness.exe"
    cmd = [mcs, "-warnaserror+", f"-out:{exe}", *sources, str(UNITY / "Harness" / "Harness.cs")]
    rc, out = run(cmd, env=dict(os.environ), cwd=REPO, timeout=120)
    assert rc == 0, f"mcs failed:\n{out}"
    return [mono, str(exe)]


def run_harness(harness: list[str], *args: str) -> tuple[int, str]:
    rc, out = run([*harness, *args], env=dict(os.environ), cwd=REPO, timeout=60)
    return int(rc), str(out)


def test_unity_component_is_kept_out_of_the_mcs_build() -> None:
    component = UNITY / "Unity" / "NpcAgentBehaviour.cs"
    assert "using UnityEngine;" in component.read_text()
    assert not list((UNITY / "Runtime").glob("*Behaviour*.cs"))


def test_csharp_codec(harness: list[str]) -> None:
    rc, out = run_harness(harness, "codec")
    assert rc == 0, out
    assert "NPC-TEST PASS codec" in out


@pytest.mark.slow
def test_csharp_guard_turn_against_npc_serve(harness: list[str], tmp_path: Path) -> None:
    with npc_serve(tmp_path / "npc.sqlite3") as served:
        rc, out = run_harness(harness, "guard", served.url)
    assert rc == 0, out
    assert "NPC-TEST openGate called" in out
    assert "NPC-TEST PASS unity guard turn" in out
    assert out.index("openGate called") < out.rindex("says (done)")


@pytest.mark.slow
def test_csharp_client_passes_the_conformance_kit(harness: list[str]) -> None:
    with conformance_kit() as kit:
        rc, out = run_harness(harness, "conformance", kit.url)
        kit_rc, report = finish(kit, timeout=30)
    assert kit_rc == 0, report
    assert "9/9 checks passed: PASSED" in report
    assert rc == 0, out
