"""The conformance kit's vocabulary and report: the harness profile, the checks, the verdict.

Shared by the checks (``bridge._conformance_checks``), which produce ``CheckResult``s, and the
runner (``bridge.conformance``), which returns a ``ConformanceReport``; rendering lives with the
report so the CLI and CI print the same expected-vs-got blocks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

PROFILE_CAPABILITIES = (
    "kitEcho",
    "kitCount",
    "kitSleep",
    "kitEmit",
    "kitSpeech",
    "kitClose",
    "kitUnimplemented",
)

CHECKS: tuple[tuple[str, str], ...] = (
    ("handshake", "handshake and subprotocol"),
    ("capabilities", "capability declaration"),
    ("call", "call with valid arguments"),
    ("resend", "resent call id"),
    ("cancel", "cancel of a running call"),
    ("unknown", "call the game does not implement"),
    ("speech", "speech say/say_end and status"),
    ("events", "events sent by the game"),
    ("close", "clean close"),
)

CheckStatus = Literal["pass", "fail", "not run"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    key: str
    title: str
    status: CheckStatus
    expected: str
    got: str
    hint: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass(frozen=True, slots=True)
class ConformanceReport:
    url: str
    game: str | None
    session: str | None
    checks: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[str, ...]:
        """Keys of the checks that did not pass (failed or not run)."""
        return tuple(c.key for c in self.checks if not c.passed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "game": self.game,
            "session": self.session,
            "passed": self.passed,
            "checks": [dataclasses.asdict(c) for c in self.checks],
        }

    def render(self) -> str:
        """The human report: one block per check with expected vs got, then the verdict."""
        lines = [f"game {self.game!r}, session {self.session}" if self.game else "no game"]
        for c in self.checks:
            mark = {"pass": "PASS", "fail": "FAIL", "not run": "SKIP"}[c.status]
            lines.append(f"  {mark:<4}  {c.key:<12}  {c.title}")
            lines.append(f"        expected: {c.expected}")
            lines.append(f"        got:      {c.got}")
            if c.hint and not c.passed:
                lines.append(f"        hint:     {c.hint}")
        ok = sum(c.passed for c in self.checks)
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(f"{ok}/{len(self.checks)} checks passed: {verdict}")
        return "\n".join(lines)
