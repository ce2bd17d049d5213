"""The bridge's exception tree and its wire codes.

Every failure the bridge reports carries the protocol error code it maps to
(design.md 4.4), so the server can turn any of them into an ``error`` frame or
a close code at one place, and the runtime can branch on ``exc.code`` without
string matching::

    BridgeError                      base; .code (ErrorCode)
    ├── ProtocolError                a peer sent something we refuse; .close_code (int | None),
    │                                .call_id (echoed id, if any), .path (field path, if any)
    ├── CallError                    a call into the game did not produce a result
    │   ├── CallTimeout              TIMEOUT: no answer before the deadline (cancel was sent)
    │   ├── CallCancelled            CANCELLED: cancelled by the runtime or the session ended it
    │   ├── Disconnected             DISCONNECTED: the game went away; outcome unknown
    │   ├── Overloaded               OVERLOADED: too many calls in flight on this session
    │   ├── DuplicateCall            DUPLICATE_ID: that call id is already in flight
    │   ├── UnknownNpc               UNKNOWN_NPC: the session has no such NPC
    │   ├── UnknownCapability        UNKNOWN_CAPABILITY: the game did not declare it
    │   └── GameError                the game answered ok=false; .code is the game's own code
    ├── HandshakeRejected            GameClient: the runtime refused the connection (.close_code /
    │                                .http_status), e.g. bad token or unsupported version
    └── GameCallError                raised by a GameClient call handler to answer ok=false

``GameError.code`` and ``GameCallError.code`` are free strings (the game's own
vocabulary, e.g. ``"BLOCKED"``); every other ``code`` is an :class:`ErrorCode`.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = [
    "BridgeError",
    "CallCancelled",
    "CallError",
    "CallTimeout",
    "CloseCode",
    "Disconnected",
    "DuplicateCall",
    "ErrorCode",
    "GameCallError",
    "GameError",
    "HandshakeRejected",
    "Overloaded",
    "ProtocolError",
    "UnknownCapability",
    "UnknownNpc",
]


class ErrorCode(StrEnum):
    """Error codes of protocol v1 (the ``code`` of an ``error`` frame)."""

    MALFORMED = "MALFORMED"
    BAD_INPUT = "BAD_INPUT"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    UNKNOWN_NPC = "UNKNOWN_NPC"
    UNKNOWN_CAPABILITY = "UNKNOWN_CAPABILITY"
    DUPLICATE_ID = "DUPLICATE_ID"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    DISCONNECTED = "DISCONNECTED"
    UNAUTHORIZED = "UNAUTHORIZED"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    RATE_LIMITED = "RATE_LIMITED"
    OVERLOADED = "OVERLOADED"
    INTERNAL = "INTERNAL"


class CloseCode(IntEnum):
    """WebSocket close codes the bridge uses (RFC 6455 plus the 4xxx private range)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003  # a text frame
    INVALID_DATA = 1007  # malformed msgpack
    POLICY = 1008  # policy violation, sustained event flood, no hello in time
    TOO_BIG = 1009
    INTERNAL = 1011  # internal error or keepalive timeout
    TRY_AGAIN_LATER = 1013  # slow consumer: the send deadline passed
    UNAUTHORIZED = 4001
    UNSUPPORTED_VERSION = 4003
    REPLACED = 4009  # a newer connection took over the session


# Codes whose errors the peer may retry unchanged (the ``retryable`` flag of error frames).
RETRYABLE = frozenset(
    {ErrorCode.RATE_LIMITED, ErrorCode.OVERLOADED, ErrorCode.TIMEOUT, ErrorCode.DISCONNECTED}
)


class BridgeError(Exception):
    """Base of every bridge error; ``code`` says which protocol error it is."""

    code: str = ErrorCode.INTERNAL

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE


class ProtocolError(BridgeError):
    """A frame or handshake we refuse.

    ``close_code`` is set when the connection must be closed (the frame cannot be
    trusted any more, e.g. malformed msgpack); when it is None an ``error`` frame
    is enough and the connection stays open.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        close_code: int | None = None,
        call_id: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.close_code = close_code
        self.call_id = call_id
        self.path = path

    def __repr__(self) -> str:
        return (
            f"ProtocolError({self.code!s}, {self.message!r}, close_code={self.close_code}, "
            f"call_id={self.call_id!r}, path={self.path!r})"
        )


class CallError(BridgeError):
    """A call into the game ended without a successful result."""

    def __init__(self, message: str = "", *, code: str | None = None, call_id: str = "") -> None:
        super().__init__(message, code=code)
        self.call_id = call_id


class CallTimeout(CallError):
    code = ErrorCode.TIMEOUT


class CallCancelled(CallError):
    code = ErrorCode.CANCELLED


class Disconnected(CallError):
    code = ErrorCode.DISCONNECTED


class Overloaded(CallError):
    code = ErrorCode.OVERLOADED


class DuplicateCall(CallError):
    code = ErrorCode.DUPLICATE_ID


class UnknownNpc(CallError):
    code = ErrorCode.UNKNOWN_NPC


class UnknownCapability(CallError):
    code = ErrorCode.UNKNOWN_CAPABILITY


class GameError(CallError):
    """The game answered ``ok: false``; ``code`` and ``message`` are the game's own."""

    def __init__(self, code: str, message: str, *, call_id: str = "") -> None:
        super().__init__(message, code=code, call_id=call_id)

    def __repr__(self) -> str:
        return f"GameError({self.code!r}, {self.message!r})"


class HandshakeRejected(BridgeError):
    """The runtime refused a GameClient connection (HTTP status or close code)."""

    def __init__(
        self,
        message: str,
        *,
        code: str = ErrorCode.UNAUTHORIZED,
        close_code: int | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.close_code = close_code
        self.http_status = http_status


class GameCallError(BridgeError):
    """Raise from a GameClient call handler to answer the call with ``ok: false``."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message, code=code)
