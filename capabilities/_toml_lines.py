"""Line numbers for TOML errors. ``tomllib`` gives values, not positions; designers need
``file:line`` to fix a mistake, so we find the lines back in the text."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from capabilities.errors import Problem

__all__ = ["TomlLines", "read_toml"]

_DECODE_ERROR_LINE = re.compile(r"\(at line (\d+), column \d+\)")


def read_toml(path: Path, shown: str) -> tuple[dict[str, Any], str] | Problem:
    """The data and text of a designer's TOML file, or the one Problem that stops reading it
    (unreadable, not UTF-8, invalid TOML with its line). ``shown`` names the file in messages.
    Every loader of designer files (capabilities, characters, npc.toml, worlds, scenarios)
    reads through here, so they all report these the same way."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Problem(shown, None, None, f"cannot read file: {exc}")
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        match = _DECODE_ERROR_LINE.search(str(exc))
        line = int(match.group(1)) if match else None
        return Problem(shown, line, None, f"invalid TOML: {exc}")


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
