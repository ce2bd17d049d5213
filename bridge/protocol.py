"""Per-connection protocol state without I/O: awaiting hello -> open -> closing -> closed.

Why sans-I/O (the websockets/h11 pattern): every rule a peer can break is
decided here from bytes in and bytes/close codes out, so the faults of
design.md 5 are tested by feeding frames to an object, and the asyncio server
only shuttles bytes. Time is passed in (``now``), never read.

Use::

    conn = BridgeConnection(config, authenticated=header_token_ok)
    msg = conn.receive(frame, now)           # a validated Message or None
    for data in conn.data_to_send(): ...     # error frames (and the welcome) to write
    if conn.close_code is not None: ...      # close the websocket with that code

The first message must be ``hello``; :meth:`BridgeConnection.receive` returns it
(after version and token checks) and the owner answers with
:meth:`BridgeConnection.accept` and a welcome frame. In the open state,
``spawn``/``despawn``/``event`` pass a token bucket: over the rate they are
answered ``RATE_LIMITED``; ``event_burst`` refusals in a row (a peer that
ignores the signal) close the connection with 1008.
"""

from __future__ import annotations

import hmac
from enum import Enum
from typing import Any

from .codec import decode_frame, encode_map
from .config import BridgeConfig
from .errors import RETRYABLE, CloseCode, ErrorCode, ProtocolError
from .messages import PROTOCOL_VERSION, Hello, Message

__all__ = ["BridgeConnection", "ConnectionState", "TokenBucket", "error_frame", "token_matches"]


class ConnectionState(Enum):
    AWAITING_HELLO = "awaiting_hello"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


def token_matches(expected: str | None, presented: str | None) -> bool:
    """Constant-time token check; no configured token means auth is off."""
    if expected is None:
        return True
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def error_frame(
    code: ErrorCode, message: str, call_id: str | None = None, retryable: bool | None = None
) -> bytes:
    frame: dict[str, Any] = {"t": "error", "code": str(code), "message": message[:1024]}
    if call_id is not None:
        frame["id"] = call_id
    frame["retryable"] = code in RETRYABLE if retryable is None else retryable
    return encode_map(frame)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; ``now`` is passed in."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> bool:
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


_RATED = frozenset({"spawn", "despawn", "event"})


class BridgeConnection:
    def __init__(self, config: BridgeConfig, *, authenticated: bool, now: float = 0.0) -> None:
        self.config = config
        self.state = ConnectionState.AWAITING_HELLO
        self.authenticated = authenticated or config.token is None
        self.hello: Hello | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.hello_deadline = now + config.hello_timeout_s
        self._out: list[bytes] = []
        self._bucket = TokenBucket(config.events_per_s, config.event_burst, now)
        self._strikes = 0

    # -- output

    def data_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    def send_error(
        self,
        code: ErrorCode,
        message: str,
        call_id: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        if self.state is ConnectionState.CLOSED or self.close_code is not None:
            return
        self._out.append(error_frame(code, message, call_id, retryable))

    def close(self, code: int, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason[:120]
            self.state = ConnectionState.CLOSING

    def fail(self, exc: ProtocolError) -> None:
        self.send_error(ErrorCode(exc.code), exc.message, exc.call_id)
        if exc.close_code is not None:
            self.close(exc.close_code, exc.message)

    def connection_lost(self) -> None:
        self.state = ConnectionState.CLOSED

    # -- input

    def accept(self, welcome: bytes) -> None:
        """The owner accepted the hello (session created or resumed): send the welcome."""
        if self.state is ConnectionState.AWAITING_HELLO and self.close_code is None:
            self.state = ConnectionState.OPEN
            self._out.append(welcome)

    def check_hello_deadline(self, now: float) -> bool:
        """Close 1008 when no hello arrived in time; True if it did close."""
        if self.state is ConnectionState.AWAITING_HELLO and now >= self.hello_deadline:
            self.send_error(ErrorCode.BAD_INPUT, "no hello within the deadline")
            self.close(CloseCode.POLICY, "hello timeout")
            return True
        return False

    def receive(self, data: bytes | str, now: float) -> Message | None:
        state = self.state
        if state is not ConnectionState.OPEN and state is not ConnectionState.AWAITING_HELLO:
            return None
        if type(data) is not bytes:
            if isinstance(data, str):
                self.send_error(ErrorCode.MALFORMED, "text frames are not accepted; send binary")
                self.close(CloseCode.UNSUPPORTED_DATA, "text frame")
                return None
            data = bytes(data)
        try:
            msg = decode_frame(data, self.config.max_frame_bytes)
        except ProtocolError as exc:
            self.fail(exc)
            return None
        if state is ConnectionState.AWAITING_HELLO:
            return self._receive_hello(msg, now)
        t = msg.t
        if t in _RATED:
            if not self._bucket.take(now):
                self._strikes += 1
                if self._strikes >= self.config.event_burst:
                    self.send_error(ErrorCode.RATE_LIMITED, "sustained flood over the event rate")
                    self.close(CloseCode.POLICY, "event flood")
                else:
                    self.send_error(
                        ErrorCode.RATE_LIMITED,
                        f"over {self.config.events_per_s:g} messages/s; {t} dropped",
                    )
                return None
            self._strikes = 0
        elif t == "hello":
            self.send_error(ErrorCode.BAD_INPUT, "t: hello was already received")
            return None
        return msg

    def _receive_hello(self, msg: Message, now: float) -> Hello | None:
        if not isinstance(msg, Hello):
            self.send_error(ErrorCode.BAD_INPUT, "the first frame must be hello")
            self.close(CloseCode.POLICY, "expected hello")
            return None
        if msg.proto != PROTOCOL_VERSION:
            self.send_error(
                ErrorCode.UNSUPPORTED_VERSION,
                f"protocol version {msg.proto} is not supported; this runtime speaks "
                f"{PROTOCOL_VERSION}",
            )
            self.close(CloseCode.UNSUPPORTED_VERSION, "unsupported version")
            return None
        if not self.authenticated:
            if not token_matches(self.config.token, msg.token):
                self.send_error(ErrorCode.UNAUTHORIZED, "missing or invalid token")
                self.close(CloseCode.UNAUTHORIZED, "unauthorized")
                return None
            self.authenticated = True
        self.hello = msg
        return msg
