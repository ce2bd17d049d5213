"""Google-style docstring parsing: the summary becomes the tool description, ``Args:`` the
parameter descriptions. Designers already write these; asking them to repeat it elsewhere
would let the two drift apart."""

from __future__ import annotations

import inspect
import re

__all__ = ["parse_docstring"]

_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$")
_ARG = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Return (description, {parameter: description})."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent: int | None = None
    for raw in lines:
        stripped = raw.strip()
        match = _SECTION.match(stripped)
        if match and not raw.startswith(" "):
            section, current, arg_indent = match.group(1), None, None
            continue
        if section is None:
            description.append(stripped)
            continue
        if section not in ("Args", "Arguments", "Parameters") or not stripped:
            continue
        indent = len(raw) - len(raw.lstrip())
        arg = _ARG.match(stripped)
        if arg and (arg_indent is None or indent <= arg_indent):
            arg_indent = indent
            current = arg.group(1).lstrip("*")
            params[current] = arg.group(2).strip()
        elif current is not None:
            params[current] = f"{params[current]} {stripped}".strip()
    text = " ".join(" ".join(description).split())
    return text, params
