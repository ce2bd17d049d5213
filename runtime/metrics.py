"""Counters a monitoring system can scrape: turns by outcome, tool calls, tokens, latencies.

Plain dictionaries updated in place (one event loop, no locks needed); ``render`` writes the
Prometheus text exposition format, served at ``GET /metrics`` by ``npc serve``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["Metrics"]


@dataclass
class _Summary:
    count: int = 0
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value


@dataclass
class Metrics:
    turns: Counter[str] = field(default_factory=Counter)
    """Turns by outcome (done, step_limit, interrupted, failed, cancelled)."""
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_ms: _Summary = field(default_factory=_Summary)
    first_speech_ms: _Summary = field(default_factory=_Summary)
    tool_ms: _Summary = field(default_factory=_Summary)
    sessions: int = 0
    """NPC sessions alive now."""

    def observe_turn(
        self,
        outcome: str,
        *,
        tool_calls: int,
        prompt_tokens: int,
        completion_tokens: int,
        model_ms: float,
        first_speech_ms: float | None,
        tool_ms: float,
    ) -> None:
        self.turns[outcome] += 1
        self.tool_calls += tool_calls
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.model_ms.observe(model_ms)
        if first_speech_ms is not None:
            self.first_speech_ms.observe(first_speech_ms)
        if tool_calls:
            self.tool_ms.observe(tool_ms)

    def render(self) -> str:
        lines = [
            "# HELP npc_turns_total Turns finished, by outcome.",
            "# TYPE npc_turns_total counter",
        ]
        for outcome in sorted(self.turns):
            lines.append(f'npc_turns_total{{outcome="{outcome}"}} {self.turns[outcome]}')
        lines += [
            "# HELP npc_tool_calls_total Tool calls the models made.",
            "# TYPE npc_tool_calls_total counter",
            f"npc_tool_calls_total {self.tool_calls}",
            "# HELP npc_tokens_total Tokens reported by the model endpoints.",
            "# TYPE npc_tokens_total counter",
            f'npc_tokens_total{{kind="prompt"}} {self.prompt_tokens}',
            f'npc_tokens_total{{kind="completion"}} {self.completion_tokens}',
            "# HELP npc_sessions NPC sessions alive.",
            "# TYPE npc_sessions gauge",
            f"npc_sessions {self.sessions}",
        ]
        for name, summary, help_text in (
            ("npc_model_seconds", self.model_ms, "Time waiting for the model, per turn."),
            ("npc_first_speech_seconds", self.first_speech_ms, "Turn start to first speech."),
            ("npc_tool_seconds", self.tool_ms, "Time executing tool calls, per turn."),
        ):
            lines += [
                f"# HELP {name} {help_text}",
                f"# TYPE {name} summary",
                f"{name}_count {summary.count}",
                f"{name}_sum {summary.total / 1000:.6f}",
            ]
        return "\n".join(lines) + "\n"
