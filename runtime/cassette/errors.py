"""Errors of record/replay (the tree is drawn in `runtime.cassette`)."""

from __future__ import annotations

__all__ = ["CassetteError", "CassetteFormatError", "ReplayExhausted", "ReplayMismatch"]


class CassetteError(Exception):
    """Base of every error raised by `runtime.cassette`.

    Not an ``httpx2.TransportError`` on purpose: a replay that cannot answer is a broken test
    or regression run, never something a client should retry.
    """


class CassetteFormatError(CassetteError):
    """A cassette file that cannot be read: names the file and the line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class ReplayMismatch(CassetteError):
    """No recording matches a request. ``field`` is the first field that differs from the
    closest recording (e.g. ``body.messages[3].content``), None when nothing was recorded
    for that method and path at all."""

    def __init__(self, message: str, field: str | None, closest: int | None) -> None:
        super().__init__(message)
        self.field = field
        self.closest = closest


class ReplayExhausted(CassetteError):
    """A request was recorded, but it is now sent more often than it was in the recording."""
