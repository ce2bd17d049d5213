"""Helpers for the real-engine tests: install an engine toolchain on demand, run
`npc serve` and `npc bridge conformance` as subprocesses, run a program with a deadline."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VILLAGE = REPO / "samples" / "village"


def ensure_tool(binary: str, packages: Sequence[str]) -> str | None:
    """Path of ``binary``; installs the Debian ``packages`` first when missing (CI runs as
    root on a fresh machine). Returns None with nothing installed (the caller skips)."""
    found = shutil.which(binary)
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "--no-install-recommends", *packages]
    for attempt in range(2):
        try:
            done = subprocess.run(install, env=env, capture_output=True, timeout=600, check=False)
        except subprocess.TimeoutExpired:
            return None
        if done.returncode == 0:
            break
        if attempt == 0:
            subprocess.run([apt, "update"], env=env, capture_output=True, timeout=600, check=False)
    return shutil.which(binary)


class _Lines:
    """Collects a subprocess's output lines in a thread (no pipe ever fills up)."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str] | None:
        regex = re.compile(pattern)
        with self._cond:
            ok = self._cond.wait_for(
                lambda: any(regex.search(line) for line in self.lines), timeout=timeout
            )
            if not ok:
                return None
            return next(m for line in self.lines if (m := regex.search(line)))

    def text(self) -> str:
        self._thread.join(timeout=5)
        with self._cond:
            return "".join(self.lines)


@dataclass
class Background:
    proc: subprocess.Popen[str]
    out: _Lines
    url: str


@contextmanager
def background(
    args: Sequence[str], *, cwd: Path = REPO, timeout: float = 30
) -> Iterator[Background]:
    """Start a command that prints a ws:// URL (merged stdout/stderr); stop it at the end."""
    proc = subprocess.Popen(
        list(args),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out = _Lines(proc.stdout)
    try:
        match = out.wait_for(r"ws://[0-9.]+:\d+", timeout)
        if match is None:
            proc.kill()
            raise AssertionError(f"{args[:4]} printed no ws:// URL:\n{out.text()}")
        yield Background(proc, out, match.group(0))
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def npc(*args: str) -> list[str]:
    return [sys.executable, "-m", "runtime.cli", *args]


@contextmanager
def npc_serve(db: Path) -> Iterator[Background]:
    """`npc serve samples/village` on a free port, offline model, its own SQLite file."""
    cmd = npc("serve", str(VILLAGE), "--port", "0", "--no-http", "--db", str(db))
    with background([*cmd, "--log-level", "WARNING"]) as served:
        yield served


@contextmanager
def conformance_kit(timeout_s: float = 3.0, wait_s: float = 40.0) -> Iterator[Background]:
    cmd = npc("bridge", "conformance", "--port", "0", "--timeout", str(timeout_s))
    with background([*cmd, "--wait", str(wait_s)]) as kit:
        yield kit


def finish(bg: Background, timeout: float) -> tuple[int, str]:
    """Wait for a background command to exit by itself; its exit code and output."""
    try:
        rc = bg.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        bg.proc.kill()
        bg.proc.wait()
        rc = -9
    return rc, bg.out.text()


def run(args: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float) -> tuple[int, str]:
    """Run to completion with merged output; a timeout is a failure (-9), not a hang."""
    try:
        done = subprocess.run(
            list(args),
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode()
        return -9, out + f"\n(timed out after {timeout} s)"
    return done.returncode, done.stdout
