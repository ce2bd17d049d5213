"""Per-session state without I/O: NPCs, declared capabilities, calls, speech streams, resume.

A session outlives its connections: when the websocket drops the session is
*detached* for ``resume_window_s``; a ``hello.resume`` with its token in that
window reattaches it with its NPCs and pending calls (design.md 4.4). Why
this is separate from :mod:`bridge.protocol`: that object lives and dies with
one websocket, this one with the game's session.

Resume rules implemented here:

- on detach, speech streams still open are remembered as interrupted; after the
  resume the game gets ``say_end {reason: "interrupted"}`` for each, and whatever the
  runtime still says on those streams (or on streams begun while detached) is dropped, so
  a stream never ends twice for the game;
- ``welcome.pending`` lists the ids of calls that were sent and still await a result;
- calls started while detached are kept unsent and sent right after the welcome;
- when the window expires, :meth:`SessionCore.end` hands back idempotent calls
  (to be resent with the same id by the game's next session) and the rest
  (which fail as DISCONNECTED: outcome unknown).
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from typing import Any

from .calls import CallTable, PendingCall
from .codec import encode_map
from .config import BridgeConfig
from .errors import UnknownCapability, UnknownNpc
from .messages import PROTOCOL_VERSION, Despawn, Hello, NpcState, Spawn

__all__ = ["NpcInfo", "SessionCore"]

_MAX_ENDED_STREAMS = 1024
"""Streams remembered as ended for the game, so late speech on them is dropped."""


@dataclass(frozen=True, slots=True)
class NpcInfo:
    npc: str
    character: str
    state: dict[str, Any] | None = None


class SessionCore:
    def __init__(
        self,
        hello: Hello,
        config: BridgeConfig,
        *,
        session_id: str | None = None,
        ids: random.Random | None = None,
    ) -> None:
        """``ids``: where session ids and call-id prefixes come from when a run must repeat
        (``BridgeConfig.id_seed``); otherwise they are random."""
        self.config = config
        self.id = session_id or (f"{ids.getrandbits(64):016x}" if ids else secrets.token_hex(8))
        self.game = hello.game
        self.resume_token = secrets.token_urlsafe(24)
        self.capabilities: frozenset[str] | None = None
        self.npcs: dict[str, NpcInfo] = {}
        prefix = f"{ids.getrandbits(16):04x}" if ids else secrets.token_hex(2)
        self.calls = CallTable(config.max_in_flight, id_prefix=prefix + "-")
        self.connected = False
        self.detached_at: float | None = None
        self.ended = False
        self._streams: set[tuple[str, str]] = set()
        self._interrupted: list[tuple[str, str]] = []
        self._ended: dict[tuple[str, str], None] = {}  # insertion-ordered, bounded
        self.declare(hello)

    def declare(self, hello: Hello) -> None:
        """Apply the capabilities and NPCs a hello declares (first hello or resume)."""
        if hello.capabilities is not None:
            self.capabilities = frozenset(hello.capabilities)
        for entry in hello.npcs or ():
            self.npcs[entry.npc] = NpcInfo(entry.npc, entry.character, entry.state)

    def apply(self, msg: Spawn | Despawn) -> None:
        if isinstance(msg, Spawn):
            self.npcs[msg.npc] = NpcInfo(msg.npc, msg.character, msg.state)
        else:
            self.npcs.pop(msg.npc, None)

    # -- calls

    def begin_call(
        self,
        npc: str,
        cap: str,
        args: dict[str, Any],
        *,
        mode: str,
        timeout_s: float,
        idempotent: bool,
        now: float,
        call_id: str | None = None,
    ) -> PendingCall:
        """Validate and register a call (fire calls are not registered: no answer is awaited)."""
        if npc not in self.npcs:
            raise UnknownNpc(f"no NPC {npc!r} in session {self.id}")
        if self.capabilities is not None and cap not in self.capabilities:
            raise UnknownCapability(f"the game did not declare capability {cap!r}")
        call = PendingCall(
            id=call_id or self.calls.new_id(),
            npc=npc,
            cap=cap,
            args=args,
            mode=mode,
            deadline=now + timeout_s,
            idempotent=idempotent,
        )
        if mode == "call":
            self.calls.add(call)
        return call

    @staticmethod
    def call_frame(call: PendingCall, now: float) -> bytes:
        call.sent = True
        return encode_map(
            {
                "t": "call",
                "id": call.id,
                "npc": call.npc,
                "cap": call.cap,
                "args": call.args,
                "mode": call.mode,
                "deadline_ms": call.deadline_ms(now),
            }
        )

    # -- speech and status

    def say_frame(self, npc: str, stream: str, text: str) -> bytes | None:
        """The frame, or None when the game must not get it: the stream was already ended
        for the game (interrupted by a disconnect), or it started while disconnected."""
        key = (npc, stream)
        if key in self._ended:
            return None
        if not self.connected and key not in self._streams:
            self._end_for_game(key)
            return None
        self._streams.add(key)
        return encode_map({"t": "say", "npc": npc, "stream": stream, "text": text})

    def say_end_frame(self, npc: str, stream: str, reason: str) -> bytes | None:
        key = (npc, stream)
        if key in self._ended:
            del self._ended[key]  # the game already had its say_end
            return None
        self._streams.discard(key)
        return encode_map({"t": "say_end", "npc": npc, "stream": stream, "reason": reason})

    def _end_for_game(self, key: tuple[str, str]) -> None:
        self._ended[key] = None
        while len(self._ended) > _MAX_ENDED_STREAMS:
            self._ended.pop(next(iter(self._ended)))

    @staticmethod
    def status_frame(npc: str, state: NpcState) -> bytes:
        return encode_map({"t": "status", "npc": npc, "state": state})

    # -- connection lifecycle

    def welcome_frame(self, missing: list[str], pending: list[str]) -> bytes:
        return encode_map(
            {
                "t": "welcome",
                "proto": PROTOCOL_VERSION,
                "session": self.id,
                "resume_token": self.resume_token,
                "runtime": self.config.runtime_name,
                "limits": self.config.limits(),
                "missing": missing,
                "pending": pending,
            }
        )

    def attach(self) -> None:
        self.connected = True
        self.detached_at = None

    def detach(self, now: float) -> None:
        """The connection dropped: open speech is interrupted, the resume window starts."""
        self.connected = False
        self.detached_at = now
        self._interrupted.extend(sorted(self._streams))
        self._streams.clear()

    def resume(self, hello: Hello, now: float) -> tuple[list[str], list[bytes]]:
        """Reattach: returns ``welcome.pending`` and the frames to send after the welcome."""
        self.declare(hello)
        self.attach()
        pending = [c.id for c in self.calls.pending() if c.sent]
        frames = [
            encode_map({"t": "say_end", "npc": n, "stream": s, "reason": "interrupted"})
            for n, s in self._interrupted
        ]
        for key in self._interrupted:
            self._end_for_game(key)  # what the runtime still says on it is not for the game
        self._interrupted.clear()
        frames.extend(self.call_frame(c, now) for c in self.calls.pending() if not c.sent)
        return pending, frames

    def unsent_frames(self, now: float) -> list[bytes]:
        return [self.call_frame(c, now) for c in self.calls.pending() if not c.sent]

    def window_expired(self, now: float) -> bool:
        return (
            not self.connected
            and self.detached_at is not None
            and now - self.detached_at >= self.config.resume_window_s
        )

    def end(self) -> tuple[list[PendingCall], list[PendingCall]]:
        """The session is over: (idempotent calls to hand on, calls that fail DISCONNECTED)."""
        self.ended = True
        self.connected = False
        calls = self.calls.drain()
        keep = [c for c in calls if c.idempotent]
        lost = [c for c in calls if not c.idempotent]
        return keep, lost
