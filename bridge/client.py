"""GameClient: the game side of the bridge in Python (the simulator, scripted games, tests).

It is also the reference behaviour for engine plugins (docs/protocol.md,
"a conforming game"):

- every call id is executed at most once: finished results are cached by id
  (bounded, across reconnects) and a repeated id gets the cached answer; an id
  still running is not started again;
- after a resume, ids in ``welcome.pending`` are answered from the cache; an id
  the game never received is answered ``ok: false, code DISCONNECTED`` so the
  runtime knows at once instead of waiting for the deadline;
- ``cancel`` cancels the handler task; nothing is answered for it;
- on a dropped connection it reconnects with exponential backoff and resumes
  with the token of the last welcome, re-declaring capabilities and NPCs.

Why handlers are async functions run as tasks: a game action takes time
(walking somewhere) and many run at once; a cancel must be able to stop one.

Why handlers may start eagerly (``eager_handlers=True``), in the protocol
callback: most game actions answer without waiting, and then no task is created
at all and the result leaves with the other results of the same TCP read, in one
write (see :mod:`bridge._transport`). The price: a handler's code up to its first
suspension runs outside any task (``asyncio.current_task()`` is None there), so
``asyncio.timeout()`` belongs after the first ``await``; everything after it runs
in the handler's own task. The default runs every handler whole in its own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict, deque
from collections.abc import (
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
)
from dataclasses import dataclass
from types import TracebackType
from typing import Any, overload

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from ._client_calls import CallHandler, _CallServer
from ._transport import SinkClientConnection
from .codec import DEFAULT_MAX_FRAME_BYTES, decode_frame, encode_map
from .errors import (
    BridgeError,
    CloseCode,
    Disconnected,
    ErrorCode,
    HandshakeRejected,
    ProtocolError,
)
from .messages import (
    PROTOCOL_VERSION,
    RUNTIME_MESSAGE_TYPES,
    SUBPROTOCOL,
    Call,
    Cancel,
    Message,
    Welcome,
)

__all__ = ["CallHandler", "GameClient", "capability_names"]

log = logging.getLogger("bridge.client")

_FATAL_CLOSES = frozenset(
    {CloseCode.UNAUTHORIZED, CloseCode.UNSUPPORTED_VERSION, CloseCode.REPLACED}
)
# Closes that answer the hello itself: malformed, too big, policy. Fatal before a welcome.
_REFUSED_HELLO = frozenset(
    {1002, CloseCode.UNSUPPORTED_DATA, CloseCode.INVALID_DATA, CloseCode.POLICY, CloseCode.TOO_BIG}
)


def capability_names(source: Any) -> list[str]:
    """Names from a capabilities.Registry (``.names()``), names, dicts or objects with ``.name``."""
    if source is None:
        return []
    names_method = getattr(source, "names", None)
    if callable(names_method):
        return [str(n) for n in names_method()]
    if isinstance(source, Mapping):
        return [str(k) for k in source]
    out: list[str] = []
    for item in source:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(str(item["name"]))
        else:
            out.append(str(item.name))
    return out


@dataclass(frozen=True, slots=True)
class _Npc:
    npc: str
    character: str
    state: dict[str, Any] | None


class GameClient(_CallServer):
    """``async with GameClient(url, token=...) as game:`` connects, declares, serves calls."""

    def __init__(
        self,
        url: str,
        *,
        game: str = "python",
        token: str | None = None,
        token_in_hello: bool = False,
        capabilities: Any = None,
        npcs: Iterable[tuple[str, str] | Mapping[str, Any]] = (),
        reconnect: bool = True,
        backoff_s: tuple[float, float] = (0.05, 2.0),
        max_attempts: int | None = None,
        cache_size: int = 4096,
        max_messages: int = 4096,
        origin: str | None = None,
        open_timeout_s: float = 10.0,
        ping_interval_s: float | None = 20.0,
        eager_handlers: bool = False,
    ) -> None:
        """``eager_handlers``: start each handler in the reader, without a task, up to its
        first suspension (faster; see the module docstring for the price). Off by default:
        every handler then runs whole in its own task, where ``asyncio.timeout()`` and
        ``asyncio.current_task()`` work from the first line."""
        self.url = url
        self._eager = eager_handlers
        self.game = game
        self._token = token
        self._token_in_hello = token_in_hello
        self._caps = capability_names(capabilities)
        self._caps_given = capabilities is not None
        self._npcs: dict[str, _Npc] = {}
        for entry in npcs:
            if isinstance(entry, Mapping):
                self._npcs[entry["npc"]] = _Npc(
                    entry["npc"], entry["character"], entry.get("state")
                )
            else:
                self._npcs[entry[0]] = _Npc(entry[0], entry[1], None)
        self._reconnect = reconnect
        self._backoff = backoff_s
        self._max_attempts = max_attempts
        self._origin = origin
        self._open_timeout = open_timeout_s
        self._ping_interval = ping_interval_s
        self._handlers: dict[str, CallHandler] = {}
        self._default: CallHandler | None = None
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size
        self._running: dict[str, asyncio.Task[None]] = {}
        self._bg: set[asyncio.Task[None]] = set()
        self._messages: asyncio.Queue[Message | None] = asyncio.Queue(max_messages)
        self._callbacks: list[Callable[[Message], None]] = []
        self._ws: ClientConnection | None = None
        self._cork: list[bytes] | None = None  # results to write when this TCP read is done
        self._backlog: deque[bytes] = deque()  # results waiting for the transport to drain
        self._backlog_task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self.welcome: Welcome | None = None
        self.failure: BaseException | None = None
        self.executions = 0  # handler runs started (a cache hit does not count)
        self.connections = 0

    # -- configuration

    @overload
    def handle(self, cap: str) -> Callable[[CallHandler], CallHandler]: ...
    @overload
    def handle(self, cap: str, fn: CallHandler) -> CallHandler: ...

    def handle(
        self, cap: str, fn: CallHandler | None = None
    ) -> Callable[[CallHandler], CallHandler] | CallHandler:
        """Register ``async fn(call) -> data`` for ``cap`` (also usable as a decorator)."""
        if fn is not None:
            self._handlers[cap] = fn
            return fn

        def deco(f: CallHandler) -> CallHandler:
            self._handlers[cap] = f
            return f

        return deco

    def default_handler(self, fn: CallHandler) -> CallHandler:
        """Handler for capabilities with no handler of their own."""
        self._default = fn
        return fn

    def on_message(self, fn: Callable[[Message], None]) -> None:
        """Call ``fn`` for every say/say_end/status/cancel/error frame (synchronously)."""
        self._callbacks.append(fn)

    # -- lifecycle

    async def __aenter__(self) -> GameClient:
        await self.connect()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def session(self) -> str | None:
        return self.welcome.session if self.welcome else None

    async def connect(self) -> Welcome:
        """Connect and wait for the first welcome; raises HandshakeRejected if refused."""
        if self._runner is None:
            self._closing = False
            self._runner = asyncio.get_running_loop().create_task(self._run())
        waiter = asyncio.ensure_future(self._connected.wait())
        done, _ = await asyncio.wait({waiter, self._runner}, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            failure = self.failure or Disconnected("connection ended before welcome")
            raise failure
        assert self.welcome is not None
        return self.welcome

    async def wait_connected(self, timeout_s: float | None = None) -> Welcome:
        async with asyncio.timeout(timeout_s):
            await self._connected.wait()
        assert self.welcome is not None
        return self.welcome

    async def close(self) -> None:
        self._closing = True
        runner, self._runner = self._runner, None
        ws = self._ws
        if ws is not None:
            await ws.close()
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        for task in list(self._running.values()):
            task.cancel()
        self._running.clear()
        self._connected.clear()
        with contextlib.suppress(asyncio.QueueFull):
            self._messages.put_nowait(None)

    async def drop(self) -> None:
        """Abort the TCP connection without a closing handshake (tests: a crash or cut cable)."""
        ws = self._ws
        if ws is not None:
            ws.transport.abort()
            await ws.wait_closed()

    # -- game -> runtime

    async def spawn(self, npc: str, character: str, state: dict[str, Any] | None = None) -> None:
        self._npcs[npc] = _Npc(npc, character, state)
        frame: dict[str, Any] = {"t": "spawn", "npc": npc, "character": character}
        if state is not None:
            frame["state"] = state
        await self._send_if_connected(encode_map(frame))

    async def despawn(self, npc: str) -> None:
        self._npcs.pop(npc, None)
        await self._send_if_connected(encode_map({"t": "despawn", "npc": npc}))

    async def event(
        self, npc: str, kind: str, data: Mapping[str, Any], ttl_ms: int | None = None
    ) -> None:
        """Push a perception; raises Disconnected while the connection is down."""
        frame: dict[str, Any] = {"t": "event", "npc": npc, "kind": kind, "data": dict(data)}
        if ttl_ms is not None:
            frame["ttl_ms"] = ttl_ms
        ws = self._ws
        if ws is None or not self.connected:
            raise Disconnected("not connected")
        try:
            await ws.send(encode_map(frame))
        except ConnectionClosed as exc:
            raise Disconnected("connection closed") from exc

    async def send_raw(self, data: bytes | str) -> None:
        """Send a frame as is (tests and tools that speak the protocol by hand)."""
        if self._ws is None:
            raise Disconnected("not connected")
        await self._ws.send(data)

    async def _send_if_connected(self, frame: bytes) -> None:
        ws = self._ws
        if ws is not None and self.connected:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(frame)

    # -- runtime -> game

    async def messages(self) -> AsyncIterator[Message]:
        """say / say_end / status / cancel / error frames until the client closes."""
        while True:
            msg = await self._messages.get()
            if msg is None:
                return
            yield msg

    # -- the connection loop

    async def _run(self) -> None:
        attempt = 0
        delay = self._backoff[0]
        while not self._closing:
            try:
                await self._session_once()
                attempt = 0
                delay = self._backoff[0]
            except HandshakeRejected as exc:
                self.failure = exc
                log.warning("bridge refused the connection: %s", exc)
                return
            except (OSError, WebSocketException, TimeoutError, ProtocolError) as exc:
                self.failure = Disconnected(f"connection failed: {exc}")
                attempt += 1
                if self.welcome is None:
                    return  # never connected: connect() reports the failure
            self._connected.clear()
            self._ws = None
            if not self._reconnect or self._closing:
                return
            if self._max_attempts is not None and attempt >= self._max_attempts:
                return
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self._backoff[1])

    def _declared_capabilities(self) -> list[str] | None:
        """The explicit list, else the handled names; None (undeclared) with a default handler."""
        if self._caps_given:
            return self._caps
        if self._default is not None:
            return None
        return sorted(self._handlers)

    def _hello(self) -> bytes:
        hello: dict[str, Any] = {"t": "hello", "proto": PROTOCOL_VERSION, "game": self.game}
        if self._token is not None and self._token_in_hello:
            hello["token"] = self._token
        if self.welcome is not None:
            hello["resume"] = self.welcome.resume_token
        caps = self._declared_capabilities()
        if caps is not None:
            hello["capabilities"] = caps
        hello["npcs"] = [
            {"npc": n.npc, "character": n.character, **({"state": n.state} if n.state else {})}
            for n in self._npcs.values()
        ]
        return encode_map(hello)

    async def _session_once(self) -> None:
        headers = {}
        if self._token is not None and not self._token_in_hello:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            ws = await connect(
                self.url,
                create_connection=SinkClientConnection,
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                compression=None,
                additional_headers=headers,
                origin=self._origin,  # type: ignore[arg-type]
                open_timeout=self._open_timeout,
                ping_interval=self._ping_interval,
                max_size=None,
                proxy=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (400, 401, 403):
                raise HandshakeRejected(
                    f"HTTP {status} at the handshake", http_status=status
                ) from exc
            raise
        self._ws = ws
        self.connections += 1
        welcomed = False
        try:
            await ws.send(self._hello())
            first = await ws.recv()
            welcome = self._decode(first)
            if not isinstance(welcome, Welcome):
                await ws.wait_closed()
                raise self._rejection(ws, welcome)
            self._on_welcome(welcome, ws)
            welcomed = True
            # Frames are handled in the protocol callback (see bridge._transport); the
            # loop below only sees what must go the stock way (fragments, text frames,
            # frames queued before the sink was installed).
            assert isinstance(ws, SinkClientConnection)
            self._cork = []
            self._backlog = deque()  # a backlog of an earlier connection dies with it
            self._backlog_task = None
            ws.sink = self._feed
            ws.after_read = self._after_read
            async for data in ws:
                self._feed(data)
                self._after_read()
        except ConnectionClosed:
            pass
        finally:
            if isinstance(ws, SinkClientConnection):
                ws.sink = None
                ws.after_read = None
            self._cork = None
            self._connected.clear()
        code = ws.close_code
        if self._closing:
            return
        if code in _FATAL_CLOSES or (not welcomed and code in _REFUSED_HELLO):
            # The same hello would be refused again (e.g. 1009: more NPCs than fit in one
            # frame): retrying forever would hang connect().
            raise HandshakeRejected(
                f"closed by the runtime: {code} {ws.close_reason}", close_code=code
            )
        if not welcomed:
            raise ConnectionError(f"closed before welcome: {code} {ws.close_reason}")

    def _feed(self, data: bytes | str) -> None:
        """Handle one frame from the runtime; never raises (it runs in a protocol callback)."""
        ws = self._ws
        if ws is None:
            return
        try:
            msg = self._decode(data)
            if msg is not None:
                reply = self._dispatch(msg, ws)
                if reply is not None:
                    self._reply(ws, reply)
        except Exception:  # pragma: no cover - a bug; the frame is lost, not the connection
            log.exception("failed to handle a frame from the runtime")

    def _rejection(self, ws: ClientConnection, msg: Message | None) -> BridgeError:
        text = getattr(msg, "message", "no welcome")
        code = ws.close_code
        if code in (CloseCode.UNAUTHORIZED, CloseCode.UNSUPPORTED_VERSION):
            err_code = (
                ErrorCode.UNAUTHORIZED
                if code == CloseCode.UNAUTHORIZED
                else ErrorCode.UNSUPPORTED_VERSION
            )
            return HandshakeRejected(text, code=err_code, close_code=code)
        return Disconnected(f"no welcome: {text} (close {code})")

    def _decode(self, data: bytes | str) -> Message | None:
        if isinstance(data, str):
            log.warning("ignored a text frame from the runtime")
            return None
        try:
            return decode_frame(
                data, max(len(data), DEFAULT_MAX_FRAME_BYTES), RUNTIME_MESSAGE_TYPES
            )
        except ProtocolError as exc:
            log.warning("ignored a bad frame from the runtime: %s", exc.message)
            return None

    def _dispatch(self, msg: Message, ws: ClientConnection) -> bytes | None:
        """Handle one frame; returns a frame the reader should send at once, if any."""
        if isinstance(msg, Call):
            return self._on_call(msg, ws)
        if isinstance(msg, Cancel):
            task = self._running.pop(msg.id, None)
            if task is not None:
                task.cancel()
        for cb in self._callbacks:
            try:
                cb(msg)
            except Exception:
                log.exception("on_message callback failed")
        try:
            self._messages.put_nowait(msg)
        except asyncio.QueueFull:
            self._messages.get_nowait()  # keep the newest; the oldest speech is stale
            self._messages.put_nowait(msg)
        return None
