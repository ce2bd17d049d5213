"""Reading TOML with enough position information to name the line of a bad field.

``tomllib`` returns plain data without positions, so a validation error's location
(``("npc", 1, "at")``) is mapped back to a line by scanning the text for table headers and keys.
Best effort by design: a wrong line number is a worse message, never a crash.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from capabilities._toml_lines import read_toml as read_toml_file
from sim.errors import Problem, SimFileError

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*["']?([A-Za-z0-9_\-]+)["']?\s*[.=]""")


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse ``path``; every failure (missing, not UTF-8, bad syntax) becomes a ``SimFileError``."""
    read = read_toml_file(path, str(path))
    if isinstance(read, Problem):
        raise SimFileError([read])
    return read


def locate(text: str, loc: Sequence[str | int]) -> int | None:
    """The 1-based line that best matches a validation location, or None when nothing does."""
    want = tuple(loc)
    counts: dict[str, int] = {}
    current: tuple[str | int, ...] = ()
    best_line: int | None = None
    best_score = 0
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            parts: tuple[str | int, ...] = tuple(
                p.strip().strip("\"'") for p in header.group(2).split(".")
            )
            if header.group(1) == "[[":
                name = ".".join(str(p) for p in parts)
                index = counts.get(name, 0)
                counts[name] = index + 1
                parts = (*parts, index)
            current = parts
            path = current
        else:
            key = _KEY.match(line)
            if key is None:
                continue
            path = (*current, key.group(1))
        if len(path) > best_score and want[: len(path)] == path:
            best_line, best_score = number, len(path)
    return best_line
