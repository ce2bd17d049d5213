"""Line numbers for TOML errors. ``tomllib`` gives values, not positions; designers need
``file:line`` to fix a mistake, so we find the lines back in the text."""

from __future__ import annotations

import re

__all__ = ["TomlLines"]


class TomlLines:
    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def array_tables(self, header: str) -> list[int]:
        """1-based line numbers of each ``[[header]]``, in order."""
        pattern = re.compile(rf"^\s*\[\[\s*{re.escape(header)}\s*\]\]")
        return [i + 1 for i, line in enumerate(self.lines) if pattern.match(line)]

    def key_line(self, key: str, start: int = 1, end: int | None = None) -> int | None:
        """First line in [start, end) that assigns ``key`` or opens a sub-table named after it."""
        dotted = re.escape(key)
        assign = re.compile(rf'^\s*(?:"{dotted}"|{dotted})\s*(?:=|\.)')
        table = re.compile(rf"^\s*\[[^\]]*\b{dotted}\b[^\]]*\]")
        stop = len(self.lines) + 1 if end is None else end
        for number in range(start, stop):
            line = self.lines[number - 1]
            if assign.match(line) or table.match(line):
                return number
        return None
