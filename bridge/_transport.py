"""websockets connections that hand complete frames over synchronously and write in batches.

Why: with the stock ``async for data in ws`` reader, every incoming frame is
queued by the protocol callback, wakes a reader task, and only that task can
resolve the future of the caller waiting for the answer: two task steps per
call where a bare ``await ws.recv()`` echo needs one (a task step costs
~10-15 us on the target VM, design.md 6). Here the protocol callback itself
gives each complete binary frame to a *sink* (the bridge's sans-I/O
connection plus dispatch), so a ``result`` resolves its caller's future
directly from ``data_received``, and every frame that arrived in one TCP read
is handled in that one callback.

Order is preserved: the sink only takes a frame when the stock assembler
holds nothing (no earlier frame is waiting for the reader task) and the frame
is a complete binary frame. Text frames, fragments and anything arriving while
the reader still has queued frames go the stock way, so the reader task (which
feeds the same sink logic) keeps handling them, with websockets' own
fragmentation and flow-control rules.

:meth:`_FrameMixin.write_frames` writes several frames with one
``transport.write`` (one syscall) while the connection is open and the
transport is not paused; callers queue what it did not write for the awaited
``send`` (flow control, send deadline).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

__all__ = ["FrameSink", "SinkClientConnection", "SinkServerConnection"]

FrameSink = Callable[[bytes], None]

_BINARY = Opcode.BINARY
_READ_SIZE = 64 * 1024
_WRITE_CHUNK = 64 * 1024  # bytes of frames per transport write before checking for a pause
_OPEN = State.OPEN


class _FrameMixin:
    """Shared by the server and client connection classes (same base, same attributes)."""

    # Set by the owner once the connection is in its message phase; None: stock behaviour.
    sink: FrameSink | None = None
    # Called after every TCP read was fully handled (all its frames given to the sink):
    # where the owner writes the answers it collected, in one write.
    after_read: Callable[[], None] | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        # asyncio's selector transport reads with recv(256 KiB): a buffer above glibc's
        # mmap threshold, shrunk to the bytes read, so each read cost mmap + mremap +
        # munmap (~10 us of system time per frame, seen with strace). A read size below
        # the threshold comes from the heap; frames are at most max_frame_bytes anyway.
        if type(getattr(transport, "max_size", None)) is int and transport.max_size > _READ_SIZE:
            transport.max_size = _READ_SIZE

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        hook = self.after_read
        if hook is not None:
            hook()

    def _take(self, event: Any) -> bool:
        """Give ``event`` to the sink if it is a complete binary frame nothing precedes."""
        sink = self.sink
        if (
            sink is not None
            and type(event) is Frame
            and event.opcode is _BINARY
            and event.fin
            and not len(self.recv_messages.frames)  # type: ignore[attr-defined]
        ):
            data = event.data
            sink(data if type(data) is bytes else bytes(data))
            return True
        return False

    def can_write_now(self) -> bool:
        """True when :meth:`write_frames` may write without waiting for the peer."""
        return (
            self.protocol.state is _OPEN  # type: ignore[attr-defined]
            and not self.paused  # type: ignore[attr-defined]
            and not self.transport.is_closing()  # type: ignore[attr-defined]
        )

    def write_frames(self, frames: Sequence[bytes]) -> int:
        """Write binary frames in as few transport writes as possible; how many were written.

        Never waits. Stops early when the transport asks to pause (the peer is not
        reading fast enough) or the connection is not open; the caller queues the rest
        for an awaited ``send`` (websockets' flow control, the send deadline).
        """
        protocol = self.protocol  # type: ignore[attr-defined]
        if protocol.state is not _OPEN:
            return 0
        written = pending = 0
        for frame in frames:
            protocol.send_binary(frame)
            written += 1
            pending += len(frame)
            if pending >= _WRITE_CHUNK:
                pending = 0
                if not self._write_out() or self.paused:  # type: ignore[attr-defined]
                    return written
        if pending:
            self._write_out()
        return written

    def _write_out(self) -> bool:
        chunks: list[bytes] = self.protocol.data_to_send()  # type: ignore[attr-defined]
        transport = self.transport  # type: ignore[attr-defined]
        try:
            if all(chunks):
                transport.write(b"".join(chunks) if len(chunks) > 1 else chunks[0])
            else:  # pragma: no cover - send_binary never asks for EOF; keep websockets' rule
                for chunk in chunks:
                    if chunk:
                        transport.write(chunk)
                    elif transport.can_write_eof():
                        transport.write_eof()
                    else:
                        transport.close()
        except Exception as exc:  # pragma: no cover - what websockets' send_context does
            self.set_connection_exc(exc)  # type: ignore[attr-defined]
            transport.abort()
            return False
        return True


class SinkServerConnection(_FrameMixin, ServerConnection):
    _abort_handle: Any = None

    def process_event(self, event: Any) -> None:
        if self.request is None or not self._take(event):
            super().process_event(event)
            if type(event) is Frame and event.opcode is Opcode.CLOSE:
                self._close_tcp_by_deadline()

    def _close_tcp_by_deadline(self) -> None:
        """After the closing handshake the server half-closes TCP and waits for the client
        to close its side; some clients (mono's ClientWebSocket) wait for the server instead.
        websockets enforces ``close_timeout`` only while someone awaits a send or close, and
        the bridge is waiting in recv: abort at the deadline so the session ends on time."""
        deadline = self.close_deadline
        if deadline is None or self._abort_handle is not None:
            return
        self._abort_handle = self.loop.call_at(deadline, self._abort_if_open)

    def _abort_if_open(self) -> None:
        self._abort_handle = None
        self.transport.abort()  # connection_lost cancels this timer: the TCP is still open

    def connection_lost(self, exc: Exception | None) -> None:
        handle, self._abort_handle = self._abort_handle, None
        if handle is not None:
            handle.cancel()
        super().connection_lost(exc)


class SinkClientConnection(_FrameMixin, ClientConnection):
    def process_event(self, event: Any) -> None:
        if self.response is None or not self._take(event):
            super().process_event(event)
