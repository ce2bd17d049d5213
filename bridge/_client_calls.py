"""How GameClient serves calls: execute each call id at most once, cache results, write them.

The half of the reference game behaviour that concerns calls (see ``bridge.client``): a finished
result is cached by id (bounded, across reconnects) and a repeated id gets the cached answer; an
id still running is not started again; after a resume, ``welcome.pending`` is answered from the
cache or ``DISCONNECTED``; handlers run as tasks (or start eagerly, see ``bridge.client``), so a
cancel can stop them. Results leave corked, one write per TCP read, and queue behind
websockets' flow control when the runtime is not reading.

``_CallServer`` holds this behaviour; ``GameClient`` owns the state it works on (declared here)
and the connection that feeds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import types
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ._transport import SinkClientConnection
from .codec import encode_map
from .errors import ErrorCode, GameCallError
from .messages import Call, Welcome

log = logging.getLogger("bridge.client")

CallHandler = Callable[[Call], Awaitable[Any]]


class _CallServer:
    """Call execution, the result cache and result writing, for ``GameClient``."""

    _eager: bool
    _handlers: dict[str, CallHandler]
    _default: CallHandler | None
    _cache: OrderedDict[str, bytes]
    _cache_size: int
    _running: dict[str, asyncio.Task[None]]
    _bg: set[asyncio.Task[None]]
    _ws: ClientConnection | None
    _cork: list[bytes] | None
    _backlog: deque[bytes]
    _backlog_task: asyncio.Task[None] | None
    _connected: asyncio.Event
    welcome: Welcome | None
    executions: int

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _reply(self, ws: ClientConnection, frame: bytes) -> None:
        """Send a result without waiting: collected and written once per TCP read.

        Why: under pipelining many calls arrive in one TCP read and their results
        leave in one write (see bridge._transport). Outside a read (the stock reader
        path) the frame is written at once. When the runtime is not reading (the
        transport paused), results queue for a sender task that awaits websockets'
        flow control.
        """
        cork = self._cork
        if cork is not None:
            cork.append(frame)
            return
        self._write_or_queue(ws, [frame])

    def _after_read(self) -> None:
        cork = self._cork
        if cork:
            self._cork = []
            ws = self._ws
            if ws is not None:
                self._write_or_queue(ws, cork)

    def _write_or_queue(self, ws: ClientConnection, frames: list[bytes]) -> None:
        assert isinstance(ws, SinkClientConnection)
        if not self._backlog and ws.can_write_now():
            written = ws.write_frames(frames)
            if written == len(frames):
                return
            frames = frames[written:]
        self._backlog.extend(frames)
        if self._backlog_task is None:
            self._backlog_task = asyncio.get_running_loop().create_task(
                self._drain(ws, self._backlog)
            )

    async def _drain(self, ws: ClientConnection, backlog: deque[bytes]) -> None:
        try:
            while backlog:
                await ws.send(backlog.popleft())
        except ConnectionClosed:
            backlog.clear()  # finished results stay cached; a resume answers from the cache
        finally:
            if self._backlog is backlog:
                self._backlog_task = None

    def _on_welcome(self, welcome: Welcome, ws: ClientConnection) -> None:
        previous = self.welcome
        self.welcome = welcome
        if previous is not None and previous.session != welcome.session:
            # A new session: calls still running belong to the old one; keep the cache,
            # the new session may resend idempotent calls with the same ids.
            for task in self._running.values():
                task.cancel()
            self._running.clear()
        for call_id in welcome.pending:
            cached = self._cache.get(call_id)
            if cached is not None:
                self._spawn_send(ws, cached)
            elif call_id not in self._running:
                self._spawn_send(
                    ws,
                    _result_frame(
                        call_id,
                        False,
                        None,
                        ErrorCode.DISCONNECTED,
                        "the game never received this call",
                    ),
                )
        self._connected.set()

    def _on_call(self, call: Call, ws: ClientConnection) -> bytes | None:
        cached = self._cache.get(call.id)
        if cached is not None:
            return cached
        if call.id in self._running:
            return None
        handler = self._handlers.get(call.cap, self._default)
        if handler is None:
            frame = _result_frame(
                call.id,
                False,
                None,
                ErrorCode.UNKNOWN_CAPABILITY,
                f"the game has no handler for {call.cap!r}",
            )
            self._remember(call.id, frame)
            return frame
        self.executions += 1
        if not self._eager:
            task = asyncio.get_running_loop().create_task(
                self._execute(call, _invoke(handler, call))
            )
            self._running[call.id] = task
            return None
        # Start the handler eagerly: most game actions answer without waiting, and then
        # no task is created at all (the frame is sent by the reader). A handler that
        # awaits something continues in a task, which a cancel can stop.
        try:
            awaitable = handler(call)
            if type(awaitable) is not types.CoroutineType and not isinstance(awaitable, Coroutine):
                first: Any = None
                rest: Awaitable[Any] = awaitable
            else:
                first = awaitable.send(None)
                rest = _resume(awaitable, first)
        except StopIteration as stop:
            frame = _result_frame(call.id, True, stop.value, None, "")
        except GameCallError as exc:
            frame = _result_frame(call.id, False, None, exc.code, exc.message)
        except Exception as exc:
            log.exception("handler for %s failed", call.cap)
            frame = _result_frame(
                call.id, False, None, ErrorCode.INTERNAL, f"handler failed: {exc}"
            )
        else:
            task = asyncio.get_running_loop().create_task(self._execute(call, rest))
            self._running[call.id] = task
            return None
        self._remember(call.id, frame)
        return None if call.mode == "fire" else frame

    async def _execute(self, call: Call, rest: Awaitable[Any]) -> None:
        try:
            data = await rest
            frame = _result_frame(call.id, True, data, None, "")
        except GameCallError as exc:
            frame = _result_frame(call.id, False, None, exc.code, exc.message)
        except asyncio.CancelledError:
            self._running.pop(call.id, None)
            raise
        except Exception as exc:
            log.exception("handler for %s failed", call.cap)
            frame = _result_frame(
                call.id, False, None, ErrorCode.INTERNAL, f"handler failed: {exc}"
            )
        self._running.pop(call.id, None)
        self._remember(call.id, frame)
        if call.mode == "fire":
            return
        ws = self._ws
        if ws is not None and self.connected:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(frame)

    def _remember(self, call_id: str, frame: bytes) -> None:
        cache = self._cache
        cache[call_id] = frame
        if len(cache) > self._cache_size:
            cache.popitem(last=False)

    def _spawn_send(self, ws: ClientConnection, frame: bytes) -> None:
        async def send() -> None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(frame)

        task = asyncio.get_running_loop().create_task(send())
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)


async def _invoke(handler: CallHandler, call: Call) -> Any:
    """The whole handler inside the task that awaits it."""
    return await handler(call)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], first: Any) -> Generator[Any, Any, Any]:
    """Continue a coroutine that was started by hand, inside a task (what ``await`` does)."""
    yielded = first
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


def _result_frame(call_id: str, ok: bool, data: Any, code: str | None, message: str) -> bytes:
    if ok:
        return encode_map({"t": "result", "id": call_id, "ok": True, "data": data})
    return encode_map(
        {"t": "result", "id": call_id, "ok": False, "error": {"code": code, "message": message}}
    )
