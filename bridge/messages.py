"""Wire messages of bridge protocol v1 (design.md 4.4) as frozen, strict pydantic models.

Why pydantic models and not TypedDicts: one declaration gives validation with
field paths for BAD_INPUT errors, the JSON Schema engine authors read
(docs/bridge-schema.json), and typed attribute access in the runtime. All
messages form one discriminated union on ``t`` (:data:`Message`), validated by
one :data:`MESSAGE_ADAPTER` built at import time so the hot path never
rebuilds a validator.

Strings that name things (ids, npc ids, capability names) are bounded so a
hostile peer cannot make us keep megabyte keys in dictionaries.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, model_validator

from .errors import ErrorCode

__all__ = [
    "GAME_MESSAGE_TYPES",
    "MESSAGE_ADAPTER",
    "PROTOCOL_VERSION",
    "RUNTIME_MESSAGE_TYPES",
    "SUBPROTOCOL",
    "Call",
    "Cancel",
    "CapName",
    "Despawn",
    "Error",
    "ErrorInfo",
    "Event",
    "Hello",
    "Id",
    "Message",
    "NpcEntry",
    "NpcId",
    "NpcState",
    "Progress",
    "Result",
    "Say",
    "SayEnd",
    "Spawn",
    "Status",
    "Welcome",
]

SUBPROTOCOL = "npc-bridge.v1"
PROTOCOL_VERSION = 1

# A call id, session id or token: short opaque strings.
Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
NpcId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
CapName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Short = Annotated[str, StringConstraints(max_length=256)]
Token = Annotated[str, StringConstraints(max_length=512)]
NpcState = Literal["idle", "thinking", "acting", "speaking"]


class _Msg(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ErrorInfo(_Msg):
    """The game's reason for a failed call: its own code and a message for the model."""

    code: Short
    message: Annotated[str, StringConstraints(max_length=4096)] = ""


class NpcEntry(_Msg):
    """An NPC the game declares in ``hello.npcs`` (same fields as ``spawn``)."""

    npc: NpcId
    character: NpcId
    state: dict[str, Any] | None = None


# ----------------------------------------------------------------- game -> runtime


class Hello(_Msg):
    """First frame of every connection. ``resume`` is the token of a previous welcome."""

    t: Literal["hello"]
    proto: int
    game: Short
    token: Token | None = None
    resume: Token | None = None
    capabilities: Annotated[list[CapName], Field(max_length=4096)] | None = None
    npcs: Annotated[list[NpcEntry], Field(max_length=4096)] | None = None


class Spawn(_Msg):
    """An NPC appeared (or changed character/state: spawning an existing id updates it)."""

    t: Literal["spawn"]
    npc: NpcId
    character: NpcId
    state: dict[str, Any] | None = None


class Despawn(_Msg):
    t: Literal["despawn"]
    npc: NpcId


class _Heard(_Msg):
    speaker: Short
    text: str


class _Saw(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    what: str
    where: Any = None


class Event(_Msg):
    """Something the NPC perceived. ``heard`` and ``saw`` have fixed shapes; others are free."""

    t: Literal["event"]
    npc: NpcId
    kind: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    data: dict[str, Any]
    ttl_ms: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _check_shape(self) -> Event:
        # Validated here (not as separate union members) so the error path reads data.text.
        if self.kind == "heard":
            _Heard.model_validate(self.data)
        elif self.kind == "saw":
            _Saw.model_validate(self.data)
        return self


class Result(_Msg):
    """The answer to a call: ``data`` when ok, ``error`` when not. The first answer wins."""

    t: Literal["result"]
    id: Id
    ok: bool
    data: Any = None
    error: ErrorInfo | None = None

    @model_validator(mode="after")
    def _error_when_failed(self) -> Result:
        if not self.ok and self.error is None:
            raise ValueError("error {code, message} is required when ok is false")
        return self


class Progress(_Msg):
    """Intermediate news about a running call (e.g. 'walking, 12 m left')."""

    t: Literal["progress"]
    id: Id
    data: Any = None


# ----------------------------------------------------------------- runtime -> game


class Welcome(_Msg):
    """Answer to hello. ``pending``: ids of calls sent before a resume, still awaiting a result."""

    t: Literal["welcome"]
    proto: int
    session: Id
    resume_token: Token
    runtime: Short
    limits: dict[str, int | float]
    missing: list[str] = []
    pending: list[str] = []


class Call(_Msg):
    """Run capability ``cap`` for ``npc``. ``deadline_ms``: milliseconds left to answer."""

    t: Literal["call"]
    id: Id
    npc: NpcId
    cap: CapName
    args: dict[str, Any]
    mode: Literal["call", "fire"] = "call"
    deadline_ms: Annotated[int, Field(ge=0)]


class Cancel(_Msg):
    t: Literal["cancel"]
    id: Id
    reason: Short = ""


class Say(_Msg):
    """A delta of speech being generated; concatenate the texts of one stream."""

    t: Literal["say"]
    npc: NpcId
    stream: Id
    text: str


class SayEnd(_Msg):
    """End of a speech stream: reason ``done``, ``interrupted`` (disconnect) or ``cancelled``."""

    t: Literal["say_end"]
    npc: NpcId
    stream: Id
    reason: Short = "done"


class Status(_Msg):
    t: Literal["status"]
    npc: NpcId
    state: NpcState


class Error(_Msg):
    """A refused frame or a failure; ``id`` echoes the call id of the frame it answers."""

    t: Literal["error"]
    id: Id | None = None
    # Not strict: on the wire the code is a plain string.
    code: Annotated[ErrorCode, Field(strict=False)]
    message: str
    retryable: bool = False


Message = Annotated[
    Hello
    | Spawn
    | Despawn
    | Event
    | Result
    | Progress
    | Welcome
    | Call
    | Cancel
    | Say
    | SayEnd
    | Status
    | Error,
    Field(discriminator="t"),
]

MESSAGE_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)

GAME_MESSAGE_TYPES = frozenset({"hello", "spawn", "despawn", "event", "result", "progress"})
RUNTIME_MESSAGE_TYPES = frozenset(
    {"welcome", "call", "cancel", "say", "say_end", "status", "error"}
)
