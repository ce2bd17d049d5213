"""Sans-I/O decoder for ``text/event-stream`` bodies (the WHATWG server-sent-events grammar).

Why hand-written: the decoder sits on the hot path of every NPC thought, so it works on whole
network reads at once (one ``splitlines`` per read, not one Python call per byte or per line
iterator step) and keeps no asyncio in it, so it is tested with plain byte strings.

Grammar handled (https://html.spec.whatwg.org/multipage/server-sent-events.html):
lines end with CRLF, LF or CR (also when the CR and the LF arrive in different reads); a blank line
dispatches the event; ``:`` starts a comment (keep-alives such as ``: OPENROUTER PROCESSING``);
``field:value`` with one optional space after the colon; a line without a colon is a field with an
empty value; several ``data`` lines join with ``\\n``; ``event`` names the event type; ``id`` is
remembered; ``retry`` and unknown fields are ignored. A leading UTF-8 BOM is dropped. Events with no
data are not dispatched (as the spec says). Unlike a browser, :meth:`SSEDecoder.close` also
dispatches a last event whose terminating blank line never came, so the caller can decide whether
it was complete (a JSON chunk that parses) or cut (it does not).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["SSEDecoder", "SSEEvent"]


class SSEEvent(NamedTuple):
    """One dispatched event. ``event`` is ``"message"`` unless the stream named it."""

    event: str
    data: str
    id: str | None = None


_BOM = b"\xef\xbb\xbf"


class SSEDecoder:
    """Feed raw body bytes in, get the complete events they finish out."""

    __slots__ = ("_buf", "_data", "_event", "_first", "_has_data", "_last_id", "_skip_lf")

    def __init__(self) -> None:
        self._buf = b""
        self._skip_lf = False
        self._first = True
        self._data: list[bytes] = []
        self._has_data = False
        self._event = ""
        self._last_id: str | None = None

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished line or event are buffered."""
        return bool(self._buf) or self._has_data or bool(self._event)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode one network read; returns every event it completed (often several)."""
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self._first:
            if not chunk:
                return []
            buf = self._buf + chunk
            if len(buf) < 3 and _BOM.startswith(buf):
                self._buf = buf
                return []
            self._first = False
            if buf.startswith(_BOM):
                buf = buf[3:]
        else:
            buf = self._buf + chunk if self._buf else chunk
        end = max(buf.rfind(b"\n"), buf.rfind(b"\r"))
        if end < 0:
            self._buf = buf
            return []
        complete = buf[: end + 1]
        self._buf = buf[end + 1 :]
        if complete[-1] == 13:  # a CR at the end: its LF may open the next read
            self._skip_lf = True
        return self._lines(complete.splitlines())

    def close(self) -> list[SSEEvent]:
        """End of body: flush a last unterminated line and event (see module docstring)."""
        lines = [self._buf] if self._buf else []
        self._buf = b""
        lines.append(b"")
        return self._lines(lines) if (self._has_data or len(lines) > 1) else []

    def _lines(self, lines: list[bytes]) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        data = self._data
        for line in lines:
            if line[:5] == b"data:":  # the hot path: nearly every line is one of these
                data.append(line[6:] if line[5:6] == b" " else line[5:])
                self._has_data = True
            elif not line:
                if self._has_data:
                    text = (data[0] if len(data) == 1 else b"\n".join(data)).decode(
                        "utf-8", "replace"
                    )
                    out.append(SSEEvent(self._event or "message", text, self._last_id))
                    data.clear()
                    self._has_data = False
                self._event = ""
            elif line[0] == 58:  # ":" comment / keep-alive
                continue
            else:
                name, sep, value = line.partition(b":")
                if sep and value[:1] == b" ":
                    value = value[1:]
                if name == b"data":  # "data" without a colon: an empty data line
                    data.append(value)
                    self._has_data = True
                elif name == b"event":
                    self._event = value.decode("utf-8", "replace")
                elif name == b"id" and b"\x00" not in value:
                    self._last_id = value.decode("utf-8", "replace")
        return out
