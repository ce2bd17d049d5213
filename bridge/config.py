"""Every limit of the bridge in one frozen record.

Why one record: each bound (design.md 3.7) needs a default, a config key and a
test at the edge; the runtime maps the ``npc.toml [bridge]`` keys of the same
names onto these fields (``token`` is the resolved secret, not the env var name).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .codec import DEFAULT_MAX_FRAME_BYTES

__all__ = ["BridgeConfig"]


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    host: str = "127.0.0.1"
    port: int = 8765  # 0 picks a free port (see BridgeServer.port)
    token: str | None = None  # None: no auth (loopback development)
    allowed_origins: tuple[str, ...] = ()  # browser Origin values accepted; none by default
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    hello_timeout_s: float = 10.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    send_timeout_s: float = 5.0
    max_in_flight: int = 256
    events_per_s: float = 200.0
    event_burst: int = 200
    resume_window_s: float = 30.0
    # Beyond design.md's list, for the same reason (bounded everything):
    max_outbox: int = 4096  # frames queued to one slow game before it counts as stalled
    max_incoming: int = 4096  # spawn/despawn/event messages waiting for the runtime
    close_timeout_s: float = 2.0  # closing handshake before the TCP connection is aborted
    default_call_timeout_s: float = 30.0
    runtime_name: str = field(default="npcagent/0.1")
    # Seed for session ids and call-id prefixes, so a run can be repeated id for id (the
    # simulator's record/replay). None: random. Resume tokens stay random either way.
    id_seed: int | None = None

    def __post_init__(self) -> None:
        positive = (
            "max_frame_bytes",
            "hello_timeout_s",
            "send_timeout_s",
            "max_in_flight",
            "events_per_s",
            "event_burst",
            "max_outbox",
            "max_incoming",
            "close_timeout_s",
            "default_call_timeout_s",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"bridge.{name} must be > 0")
        for name in ("ping_interval_s", "ping_timeout_s", "resume_window_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"bridge.{name} must be >= 0")
        if not 0 <= self.port <= 65535:
            raise ValueError("bridge.port must be in 0..65535")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> BridgeConfig:
        """Build from a ``[bridge]`` table; unknown keys are an error (typos must not pass)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown bridge setting(s): {', '.join(unknown)}")
        kwargs = dict(values)
        if "allowed_origins" in kwargs:
            origins = kwargs["allowed_origins"]
            if isinstance(origins, str):
                raise ValueError("bridge.allowed_origins must be a list of origins")
            kwargs["allowed_origins"] = tuple(origins)
        return cls(**kwargs)

    def limits(self) -> dict[str, int | float]:
        """The limits announced to the game in ``welcome.limits``."""
        return {
            "max_frame_bytes": self.max_frame_bytes,
            "max_in_flight": self.max_in_flight,
            "events_per_s": self.events_per_s,
            "event_burst": self.event_burst,
            "resume_window_s": self.resume_window_s,
            "ping_interval_s": self.ping_interval_s,
        }
