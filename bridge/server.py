"""The bridge server: websockets transport around the sans-I/O protocol core.

Why the handshake checks live in ``process_request``: origin (403), subprotocol
(400) and a wrong bearer token (401) are refused before a websocket exists,
so a hostile page or scanner costs one HTTP response. A missing header token
is allowed because browsers cannot set headers: such connections must carry
the token in ``hello`` (else close 4001).

Everything else (framing, validation, rate limits, the hello rules) is decided
by :class:`bridge.protocol.BridgeConnection`; this module moves bytes, owns the
timers and maps sessions to connections (resume, newest connection wins).
"""

from __future__ import annotations

import asyncio
import http
import logging
import random
from collections.abc import Mapping
from types import MappingProxyType, TracebackType
from typing import Protocol

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ._transport import SinkServerConnection
from .calls import PendingCall
from .config import BridgeConfig
from .errors import CloseCode, Disconnected
from .messages import SUBPROTOCOL, Hello
from .protocol import BridgeConnection, token_matches
from .session import Session, _Link
from .session_core import SessionCore

__all__ = ["BridgeServer", "SessionHandler"]

log = logging.getLogger("bridge.server")


class SessionHandler(Protocol):
    """What the runtime plugs into the server. Every method must return promptly."""

    def missing_capabilities(self, hello: Hello) -> list[str]:
        """Capability names the runtime needs but ``hello`` did not declare (welcome.missing)."""
        ...

    async def session_opened(self, session: Session) -> None:
        """A new session (not a resume) was welcomed; start reading ``session.incoming()``."""
        ...

    async def session_closed(self, session: Session) -> None:
        """The session ended (resume window over, closed, or server stopping)."""
        ...


class _NoHandler:
    def missing_capabilities(self, hello: Hello) -> list[str]:
        return []

    async def session_opened(self, session: Session) -> None:
        return None

    async def session_closed(self, session: Session) -> None:
        return None


def _bearer(request: Request) -> str | None:
    value = request.headers.get("Authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class BridgeServer:
    """``async with BridgeServer(config, handler) as server:`` serves until the block exits."""

    def __init__(self, config: BridgeConfig | None = None, handler: SessionHandler | None = None):
        self.config = config or BridgeConfig()
        self.handler: SessionHandler = handler or _NoHandler()
        self._server: Server | None = None
        self._sessions: dict[str, Session] = {}
        self._by_token: dict[str, Session] = {}
        self._orphans: dict[str, list[PendingCall]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        seed = self.config.id_seed
        self._ids = random.Random(seed) if seed is not None else None

    @property
    def sessions(self) -> Mapping[str, Session]:
        return MappingProxyType(self._sessions)

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}"

    async def __aenter__(self) -> BridgeServer:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        cfg = self.config
        self._server = await serve(
            self._handle,
            cfg.host,
            cfg.port,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            compression=None,
            process_request=self._process_request,
            max_size=cfg.max_frame_bytes,
            ping_interval=cfg.ping_interval_s or None,
            ping_timeout=cfg.ping_timeout_s or None,
            close_timeout=cfg.close_timeout_s,
            open_timeout=cfg.hello_timeout_s,
            create_connection=SinkServerConnection,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close every connection (1001), fail pending calls (Disconnected), end sessions."""
        if self._server is None:
            return
        server, self._server = self._server, None
        for session in list(self._sessions.values()):
            self._end_session(session, "the runtime is stopping", hand_on=False)
        for calls in self._orphans.values():
            for pc in calls:
                _fail(pc, Disconnected("the runtime is stopping", call_id=pc.id))
        self._orphans.clear()
        server.close()
        await server.wait_closed()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- handshake

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self.config.allowed_origins:
            return conn.respond(http.HTTPStatus.FORBIDDEN, "origin not allowed\n")
        offered = ",".join(request.headers.get_all("Sec-WebSocket-Protocol"))
        if SUBPROTOCOL not in (p.strip() for p in offered.split(",")):
            return conn.respond(
                http.HTTPStatus.BAD_REQUEST, f"the {SUBPROTOCOL} subprotocol is required\n"
            )
        presented = _bearer(request)
        if presented is not None and not token_matches(self.config.token, presented):
            return conn.respond(http.HTTPStatus.UNAUTHORIZED, "invalid token\n")
        return None

    # -- one connection

    async def _handle(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        presented = _bearer(ws.request) if ws.request is not None else None
        conn = BridgeConnection(
            cfg, authenticated=presented is not None and cfg.token is not None, now=loop.time()
        )
        hello: Hello | None = None
        try:
            async with asyncio.timeout(cfg.hello_timeout_s):
                while hello is None and conn.close_code is None:
                    msg = conn.receive(await ws.recv(), loop.time())
                    hello = msg if isinstance(msg, Hello) else None
        except TimeoutError:
            conn.check_hello_deadline(float("inf"))
        except ConnectionClosed:
            return
        if hello is None:
            await self._refuse(ws, conn)
            return
        session, pending, after, new = self._open_session(hello, loop.time())
        assert isinstance(ws, SinkServerConnection)  # serve(create_connection=...) above
        link = _Link(ws, session)
        session._attach(link)
        conn.accept(session._core.welcome_frame(self._missing(hello), pending))
        for frame in conn.data_to_send():
            link.post(frame)
        for frame in after:
            link.post(frame)
        if new:
            try:
                await self.handler.session_opened(session)
            except Exception:
                log.exception("session_opened failed for %s", session.id)
        try:
            await self._read(ws, conn, session, link)
        finally:
            conn.connection_lost()
            if session._detach(link) and not session.ended:
                session._window_timer = loop.call_later(
                    cfg.resume_window_s, self._window_check, session
                )

    async def _read(
        self, ws: SinkServerConnection, conn: BridgeConnection, session: Session, link: _Link
    ) -> None:
        """Feed frames to the protocol core until the connection must stop reading.

        Complete binary frames are fed from the protocol callback (the sink, see
        :mod:`bridge._transport`); this loop feeds the rest (fragments, text frames,
        frames queued before the sink was installed) through the same function.
        """
        loop = asyncio.get_running_loop()
        stopped = False

        def feed(data: bytes | str) -> bool:
            nonlocal stopped
            if stopped:
                return True
            msg = conn.receive(data, loop.time())
            if conn.has_output:
                for frame in conn.data_to_send():
                    link.post(frame)
            if conn.close_code is not None:
                link.request_close(conn.close_code, conn.close_reason)
                stopped = True
                return True
            if msg is not None:
                session._dispatch(msg)
            if not link.open:
                stopped = True
            return stopped

        def sink(data: bytes) -> None:
            nonlocal stopped
            try:
                feed(data)
            except Exception:  # pragma: no cover - a bug; never let it reach websockets
                log.exception("session %s: failed to handle a frame", session.id)
                stopped = True
                link.request_close(CloseCode.INTERNAL, "internal error")

        ws.sink = sink
        ws.after_read = link.after_read
        try:
            async for data in ws:
                if feed(data):
                    break
            await ws.wait_closed()
        except ConnectionClosed:
            return
        finally:
            ws.sink = None
            ws.after_read = None

    async def _refuse(self, ws: ServerConnection, conn: BridgeConnection) -> None:
        try:
            async with asyncio.timeout(self.config.close_timeout_s):
                for frame in conn.data_to_send():
                    await ws.send(frame)
                await ws.close(conn.close_code or CloseCode.POLICY, conn.close_reason)
        except (TimeoutError, ConnectionClosed):
            ws.transport.abort()

    def _missing(self, hello: Hello) -> list[str]:
        try:
            return list(self.handler.missing_capabilities(hello))
        except Exception:
            log.exception("missing_capabilities failed")
            return []

    # -- sessions

    def _open_session(
        self, hello: Hello, now: float
    ) -> tuple[Session, list[str], list[bytes], bool]:
        """Resume the session named by ``hello.resume`` if still in its window, else a new one.

        Returns the session, ``welcome.pending``, frames to send after the welcome, and
        whether the session is new. A new session of a game adopts the idempotent calls
        its previous session left behind and resends them with the same ids.
        """
        if hello.resume is not None:
            session = self._by_token.get(hello.resume)
            if session is not None and not session.ended and session.game == hello.game:
                if session._window_timer is not None:
                    session._window_timer.cancel()
                    session._window_timer = None
                session.hello = hello
                pending, frames = session._core.resume(hello, now)
                return session, pending, frames, False
        core = SessionCore(hello, self.config, ids=self._ids)
        core.attach()
        session = Session(core, self, hello)
        self._sessions[core.id] = session
        self._by_token[core.resume_token] = session
        orphans = [pc for pc in self._orphans.pop(hello.game, []) if pc.deadline > now]
        if orphans:
            session._adopt(orphans)
        return session, [], core.unsent_frames(now), True

    def _window_check(self, session: Session) -> None:
        if session.ended or session.connected:
            return
        self._end_session(session, "the game did not come back within the resume window")

    def _end_session(self, session: Session, reason: str, *, hand_on: bool = True) -> None:
        keep = session._end(reason)
        self._sessions.pop(session.id, None)
        self._by_token.pop(session._core.resume_token, None)
        if keep:
            if hand_on:
                self._orphans.setdefault(session.game, []).extend(keep)
                loop = asyncio.get_running_loop()
                for pc in keep:
                    loop.call_at(pc.deadline, self._expire_orphan, session.game, pc)
            else:
                for pc in keep:
                    _fail(pc, Disconnected(reason, call_id=pc.id))
        task = asyncio.get_running_loop().create_task(self._closed_hook(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _expire_orphan(self, game: str, pc: PendingCall) -> None:
        calls = self._orphans.get(game)
        if calls is not None and pc in calls:
            calls.remove(pc)
            _fail(
                pc,
                Disconnected(
                    "no session of the game came back; outcome unknown: look again", call_id=pc.id
                ),
            )

    async def _closed_hook(self, session: Session) -> None:
        try:
            await self.handler.session_closed(session)
        except Exception:
            log.exception("session_closed failed for %s", session.id)


def _fail(pc: PendingCall, exc: BaseException) -> None:
    fut = pc.waiter
    if fut is not None and not fut.done():
        fut.set_exception(exc)
