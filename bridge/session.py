"""The runtime's handle on one game session: calls, speech, status, incoming messages.

Why every send goes through a per-connection outbox and writer task: the
runtime must never block on a slow game (design.md 5, fault 15). ``say``,
``status`` and friends only append to a bounded deque; the writer drains it
under the send deadline. A game that stops reading is closed with 1013 when
the deadline passes or the outbox overflows, and nothing else waits on it.

A :class:`Session` outlives its websocket (resume, see
:mod:`bridge.session_core`); its :class:`_Link` is the current connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from websockets.exceptions import ConnectionClosed

from ._transport import SinkServerConnection
from .calls import PendingCall
from .errors import (
    CallCancelled,
    CallTimeout,
    CloseCode,
    Disconnected,
    ErrorCode,
    GameError,
)
from .messages import Despawn, Event, Hello, NpcState, Progress, Result, Spawn
from .protocol import error_frame
from .session_core import NpcInfo, SessionCore

if TYPE_CHECKING:
    from .server import BridgeServer

__all__ = ["Incoming", "Session"]

log = logging.getLogger("bridge.server")

Incoming = Spawn | Despawn | Event
# Frames below this size may be written by the caller directly, in batches of at most
# _BATCH_MAX bytes (see _Link.send).
_DIRECT_MAX = 16 * 1024
_BATCH_MAX = 64 * 1024
# Timers may fire up to a clock tick early; count a deadline as passed within this slack.
_SLACK = 1e-3


class _Link:
    """One websocket of a session: its outbox, writer task and close request."""

    def __init__(self, ws: SinkServerConnection, session: Session) -> None:
        self.ws = ws
        self.session = session
        self.config = session.config
        self.outbox: deque[bytes] = deque()
        self.close_code: int | None = None
        self._close_req: tuple[int, str] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._batch: list[bytes] | None = None  # frames to write at the end of this iteration
        self._batch_bytes = 0
        self._woken = 0  # callers resolved by results since the last TCP read was handled
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run())

    @property
    def open(self) -> bool:
        return self._close_req is None and self.close_code is None

    def post(self, frame: bytes) -> bool:
        if not self.open:
            return False
        self.outbox.append(frame)
        if len(self.outbox) > self.config.max_outbox:
            log.warning("session %s: outbox overflow, closing 1013", self.session.id)
            self.outbox.clear()
            self._abort_stalled()
            return False
        self._wake_writer()
        return True

    def _wake_writer(self) -> None:
        wake = self._wake
        if wake is not None:
            self._wake = None
            if not wake.done():
                wake.set_result(None)

    def send(self, frame: bytes) -> bool:
        """Write ``frame`` now (or with the open batch) when that cannot block, else queue it.

        Why: a call awaits its result anyway, so writing without the writer task saves
        a task wake-up per call (the hot path). Taken only when nothing is queued, the
        transport is not paused and its buffer is empty, and the frame is small, so it
        cannot pile up behind a peer that stopped reading; otherwise the frame goes
        through the outbox and its send deadline (same order either way: a batch is
        flushed before the writer runs).
        """
        batch = self._batch
        if batch is not None:
            if self._batch_bytes + len(frame) <= _BATCH_MAX and self._close_req is None:
                batch.append(frame)
                self._batch_bytes += len(frame)
                return True
            return self.post(frame)
        if len(frame) < _DIRECT_MAX and self._direct_ok() and self.ws.write_frames((frame,)):
            return True
        return self.post(frame)

    def after_read(self) -> None:
        """A TCP read resolved several callers' futures: batch what they send next.

        The woken callers run in the next loop iteration, in the order their futures
        were resolved; the flush is scheduled after them, so calls they make right
        away (pipelining: many NPCs each awaiting one call) leave in one write,
        without an extra loop iteration. One woken caller writes directly.
        """
        woken, self._woken = self._woken, 0
        if woken > 1 and self._batch is None and self._direct_ok():
            self._batch = []
            self._batch_bytes = 0
            self._loop.call_soon(self._flush)

    def _direct_ok(self) -> bool:
        """Nothing queued, not closing, the transport not paused and its buffer empty."""
        ws = self.ws
        return (
            self._wake is not None
            and not self.outbox
            and self._close_req is None
            and self.close_code is None
            and ws.can_write_now()
            and ws.transport.get_write_buffer_size() == 0
        )

    def _flush(self) -> None:
        frames, self._batch = self._batch or [], None
        if frames and self.close_code is None:
            written = self.ws.write_frames(frames)
            if written < len(frames):
                # The peer stopped keeping up mid-batch: the rest goes first through the
                # outbox and its send deadline.
                self.outbox.extendleft(reversed(frames[written:]))
                self._wake_writer()

    def request_close(self, code: int, reason: str = "") -> None:
        """Close after the queued frames are written (they may carry the error explaining why)."""
        if self._close_req is None and self.close_code is None:
            self._close_req = (code, reason)
            wake = self._wake
            self._wake = None
            if wake is not None and not wake.done():
                wake.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        ws = self.ws
        outbox = self.outbox
        try:
            while True:
                if outbox:
                    async with asyncio.timeout(self.config.send_timeout_s):
                        while outbox:
                            await ws.send(outbox.popleft())
                    continue
                if self._close_req is not None:
                    code, reason = self._close_req
                    await self._close(code, reason)
                    return
                self._wake = loop.create_future()
                await self._wake
        except TimeoutError:
            log.warning("session %s: send deadline passed, closing 1013", self.session.id)
            self._abort_stalled()
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # pragma: no cover - a bug; never let it pass silently
            log.exception("session %s: writer failed", self.session.id)
            self.ws.transport.abort()

    def _abort_stalled(self) -> None:
        self.close_code = CloseCode.TRY_AGAIN_LATER
        self._close_req = (CloseCode.TRY_AGAIN_LATER, "slow consumer")
        asyncio.get_running_loop().create_task(
            self._close(CloseCode.TRY_AGAIN_LATER, "slow consumer")
        )

    async def _close(self, code: int, reason: str) -> None:
        self.close_code = code
        try:
            async with asyncio.timeout(self.config.close_timeout_s):
                await self.ws.close(code, reason)
        except TimeoutError:
            self.ws.transport.abort()

    def stop(self) -> None:
        self._task.cancel()


class Session:
    """A game connected to the runtime. Obtained from ``SessionHandler.session_opened``."""

    def __init__(self, core: SessionCore, server: BridgeServer, hello: Hello) -> None:
        self._core = core
        self._server = server
        self.config = server.config
        self.hello = hello
        self._loop = asyncio.get_running_loop()
        self._link: _Link | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._window_timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._incoming: asyncio.Queue[Incoming | None] = asyncio.Queue(self.config.max_incoming)
        self._closed = asyncio.Event()
        self.close_code: int | None = None  # close code of the last connection

    # -- what the game declared

    @property
    def id(self) -> str:
        return self._core.id

    @property
    def game(self) -> str:
        return self._core.game

    @property
    def capabilities(self) -> frozenset[str] | None:
        """Capability names the game declared in hello (None: it declared none)."""
        return self._core.capabilities

    @property
    def npcs(self) -> Mapping[str, NpcInfo]:
        return MappingProxyType(self._core.npcs)

    @property
    def connected(self) -> bool:
        return self._core.connected

    @property
    def ended(self) -> bool:
        return self._core.ended

    @property
    def in_flight(self) -> int:
        return len(self._core.calls)

    async def wait_ended(self) -> None:
        await self._closed.wait()

    # -- calls

    async def call(
        self,
        npc: str,
        cap: str,
        args: Mapping[str, Any] | None = None,
        *,
        mode: Literal["call", "fire"] = "call",
        timeout_s: float | None = None,
        idempotent: bool = False,
        call_id: str | None = None,
        on_progress: Callable[[Any], None] | None = None,
    ) -> Any:
        """Run capability ``cap`` for ``npc`` in the game and return the result's ``data``.

        Raises CallTimeout, CallCancelled, Disconnected, GameError (the game said
        ok=false), Overloaded, DuplicateCall, UnknownNpc, UnknownCapability.
        A ``fire`` call returns None once the frame is queued for sending.
        """
        if self._core.ended:
            raise Disconnected(f"session {self.id} has ended")
        now = self._loop.time()
        timeout = self.config.default_call_timeout_s if timeout_s is None else timeout_s
        pc = self._core.begin_call(
            npc,
            cap,
            dict(args) if args else {},
            mode=mode,
            timeout_s=timeout,
            idempotent=idempotent,
            now=now,
            call_id=call_id,
        )
        link = self._link
        if mode == "fire":
            if link is None or not link.post(self._core.call_frame(pc, now)):
                raise Disconnected(f"session {self.id} is not connected")
            return None
        fut: asyncio.Future[Any] = self._loop.create_future()
        pc.waiter = fut
        pc.progress = on_progress
        self._arm(pc.deadline)
        try:
            if link is not None and self._core.connected:
                link.send(self._core.call_frame(pc, now))
            return await fut
        except asyncio.CancelledError:
            if self._core.calls.finish(pc.id) is not None:
                self._send_cancel(pc, "cancelled by the runtime")
            raise

    async def cancel(self, call_id: str, reason: str = "cancelled") -> bool:
        """Cancel a pending call: its caller gets CallCancelled, the game a ``cancel``."""
        pc = self._core.calls.finish(call_id)
        if pc is None:
            return False
        self._send_cancel(pc, reason)
        _fail(pc, CallCancelled(reason, call_id=call_id))
        return True

    def _send_cancel(self, pc: PendingCall, reason: str) -> None:
        if pc.sent and self._link is not None:
            self._link.post(self._encode_cancel(pc.id, reason))

    @staticmethod
    def _encode_cancel(call_id: str, reason: str) -> bytes:
        from .codec import encode_map

        return encode_map({"t": "cancel", "id": call_id, "reason": reason})

    def _arm(self, deadline: float) -> None:
        timer = self._timer
        if timer is not None:
            if deadline >= self._timer_when:
                return
            timer.cancel()
        self._timer_when = deadline
        self._timer = self._loop.call_at(deadline, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        now = self._loop.time()
        for pc in self._core.calls.expired(now + _SLACK):
            self._send_cancel(pc, "timeout")
            _fail(pc, CallTimeout(f"{pc.cap} got no answer in time", call_id=pc.id))
        nxt = self._core.calls.next_deadline()
        if nxt is not None:
            self._arm(nxt)

    # -- speech and status: never block, dropped while disconnected

    def say(self, npc: str, stream: str, text: str) -> bool:
        """Send a speech delta; False if it could not be queued (disconnected or stalled)."""
        frame = self._core.say_frame(npc, stream, text)
        link = self._link
        return frame is not None and link is not None and self._core.connected and link.post(frame)

    def say_end(self, npc: str, stream: str, reason: str = "done") -> bool:
        frame = self._core.say_end_frame(npc, stream, reason)
        link = self._link
        return frame is not None and link is not None and self._core.connected and link.post(frame)

    def status(self, npc: str, state: NpcState) -> bool:
        link = self._link
        return (
            link is not None
            and self._core.connected
            and link.post(self._core.status_frame(npc, state))
        )

    # -- incoming

    def __aiter__(self) -> AsyncIterator[Incoming]:
        return self.incoming()

    async def incoming(self) -> AsyncIterator[Incoming]:
        """Spawn, despawn and event messages in arrival order, until the session ends."""
        while True:
            msg = await self._incoming.get()
            if msg is None:
                self._incoming.put_nowait(None)  # wake other iterators too
                return
            yield msg

    def _dispatch(self, msg: Any) -> None:
        t = msg.t
        if t == "result":
            self._on_result(msg)
        elif t == "event":
            if msg.npc not in self._core.npcs:
                self._post_error(ErrorCode.UNKNOWN_NPC, f"npc: no NPC {msg.npc!r}")
                return
            self._enqueue(msg)
        elif t in ("spawn", "despawn"):
            self._core.apply(msg)
            self._enqueue(msg)
        elif t == "progress":
            self._on_progress(msg)

    def _enqueue(self, msg: Incoming) -> None:
        try:
            self._incoming.put_nowait(msg)
        except asyncio.QueueFull:
            self._post_error(ErrorCode.OVERLOADED, "the runtime is behind; message dropped")

    def _post_error(self, code: ErrorCode, message: str, call_id: str | None = None) -> None:
        if self._link is not None:
            self._link.post(error_frame(code, message, call_id))

    def _on_result(self, msg: Result) -> None:
        pc = self._core.calls.finish(msg.id)
        if pc is None:
            kind = self._core.calls.classify(msg.id)
            log.info("session %s: dropped %s answer for call %r", self.id, kind, msg.id)
            return
        fut = pc.waiter
        if fut is None or fut.done():
            return
        link = self._link
        if link is not None:
            link._woken += 1
        if msg.ok:
            fut.set_result(msg.data)
        else:
            err = msg.error
            assert err is not None  # guaranteed by Result's validator
            if err.code == ErrorCode.DISCONNECTED:
                fut.set_exception(Disconnected(err.message, call_id=pc.id))
            else:
                fut.set_exception(GameError(err.code, err.message, call_id=pc.id))

    def _on_progress(self, msg: Progress) -> None:
        pc = self._core.calls.get(msg.id)
        if pc is None or pc.progress is None:
            return
        try:
            pc.progress(msg.data)
        except Exception:
            log.exception("session %s: progress callback failed", self.id)

    # -- lifecycle (driven by the server)

    def _attach(self, link: _Link) -> None:
        old = self._link
        self._link = link
        if old is not None and old is not link:
            old.request_close(CloseCode.REPLACED, "replaced by a newer connection")

    def _detach(self, link: _Link) -> bool:
        """The link's websocket closed; True if it was the current one (session detached)."""
        sent = link.ws.protocol.close_sent
        self.close_code = link.close_code or (sent.code if sent else None) or link.ws.close_code
        link.stop()
        if self._link is not link:
            return False
        self._link = None
        self._core.detach(self._loop.time())
        return True

    def _end(self, reason: str) -> list[PendingCall]:
        """End the session; returns idempotent calls for the game's next session."""
        keep, lost = self._core.end()
        for pc in lost:
            _fail(pc, Disconnected(f"{reason}; outcome unknown: look again", call_id=pc.id))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        link, self._link = self._link, None
        if link is not None:
            link.request_close(CloseCode.GOING_AWAY, reason)
        try:
            self._incoming.put_nowait(None)
        except asyncio.QueueFull:
            # Make room for the end marker: the runtime would read stale news anyway.
            self._incoming.get_nowait()
            self._incoming.put_nowait(None)
        self._closed.set()
        return keep

    def _adopt(self, calls: list[PendingCall]) -> None:
        for pc in calls:
            pc.sent = False
            self._core.calls.adopt(pc)
            self._arm(pc.deadline)


def _fail(pc: PendingCall, exc: BaseException) -> None:
    fut = pc.waiter
    if fut is not None and not fut.done():
        fut.set_exception(exc)
