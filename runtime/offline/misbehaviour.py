"""The misbehaviour knob: make the offline model fail on purpose, at a seeded rate.

Chaos runs and client tests need the failures real providers produce, reproducibly. Each
request draws from a generator seeded by the model seed, the conversation digest and the attempt
number of that conversation, so a retry of the same request can succeed (as against a real
provider) while the whole run stays reproducible regardless of how NPCs interleave.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from enum import StrEnum

from runtime.offline.errors import OfflineConfigError
from runtime.offline.policy import Reply, ToolCall

__all__ = ["Fault", "Misbehaviour", "apply_fault"]


class Fault(StrEnum):
    """One way to misbehave. The values are the names used in specs and CLI flags."""

    INVALID_JSON = "invalid_json"  # tool-call arguments that are not JSON
    UNKNOWN_TOOL = "unknown_tool"  # a tool name the request did not offer
    MISSING_ID = "missing_id"  # a tool call without an id
    SLOW = "slow"  # a delay between SSE events
    ERROR_MID_STREAM = "error_mid_stream"  # `event: error` after a 200 and some chunks
    HTTP_429 = "http_429"  # rate limited, with Retry-After
    HTTP_500 = "http_500"  # internal server error

    @property
    def needs_tool_call(self) -> bool:
        return self in (Fault.INVALID_JSON, Fault.UNKNOWN_TOOL, Fault.MISSING_ID)

    @property
    def needs_stream(self) -> bool:
        return self in (Fault.SLOW, Fault.ERROR_MID_STREAM)


@dataclass(frozen=True, slots=True)
class Misbehaviour:
    """How often and how to misbehave.

    ``rate``: probability in [0, 1] that a request misbehaves. ``kinds``: the faults to pick
    from (uniformly among those that apply to the reply: argument faults need a tool call,
    stream faults a streaming request). ``delay_s``: pause between events of a slow stream.
    ``retry_after_s``: the Retry-After of a 429.
    """

    rate: float = 0.1
    kinds: frozenset[Fault] = frozenset(Fault)
    delay_s: float = 0.05
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise OfflineConfigError(f"misbehaviour rate must be within [0, 1], got {self.rate}")
        if not self.kinds:
            raise OfflineConfigError("misbehaviour needs at least one kind")
        if self.delay_s < 0 or self.retry_after_s < 0:
            raise OfflineConfigError("misbehaviour delay_s and retry_after_s must be >= 0")
        object.__setattr__(self, "kinds", frozenset(Fault(k) for k in self.kinds))

    @classmethod
    def parse(cls, spec: str) -> Misbehaviour:
        """``"RATE"`` or ``"RATE:kind,kind"``, e.g. ``"0.2:http_429,invalid_json"``."""
        rate_text, _, kinds_text = spec.partition(":")
        try:
            rate = float(rate_text)
        except ValueError:
            raise OfflineConfigError(f"bad misbehaviour rate {rate_text!r} in {spec!r}") from None
        if not kinds_text.strip():
            return cls(rate=rate)
        kinds: set[Fault] = set()
        for name in kinds_text.split(","):
            try:
                kinds.add(Fault(name.strip()))
            except ValueError:
                allowed = ", ".join(f.value for f in Fault)
                raise OfflineConfigError(
                    f"unknown misbehaviour {name.strip()!r} (one of: {allowed})"
                ) from None
        return cls(rate=rate, kinds=frozenset(kinds))

    def choose(self, rng: random.Random, *, has_tool_call: bool, stream: bool) -> Fault | None:
        """The fault for this request, or None to behave."""
        if self.rate <= 0.0 or rng.random() >= self.rate:
            return None
        options = sorted(
            k
            for k in self.kinds
            if (has_tool_call or not k.needs_tool_call) and (stream or not k.needs_stream)
        )
        return rng.choice(options) if options else None


def apply_fault(reply: Reply, fault: Fault | None, offered: frozenset[str]) -> Reply:
    """The reply with the argument-level fault applied (stream and HTTP faults are the app's)."""
    if fault is None or not fault.needs_tool_call or not reply.tool_calls:
        return reply
    first, rest = reply.tool_calls[0], reply.tool_calls[1:]
    if fault is Fault.INVALID_JSON:
        # Cut before the closing brace: what a model truncated by max_tokens produces.
        bad = first.arguments[:-1] if len(first.arguments) > 1 else "{"
        first = replace(first, arguments=bad)
    elif fault is Fault.UNKNOWN_TOOL:
        name = f"not_a_tool_{first.name}"[:64]
        while name in offered:
            name = f"x{name}"[:64]
        first = replace(first, name=name)
    else:
        first = ToolCall(None, first.name, first.arguments)
    return replace(reply, tool_calls=(first, *rest))
