"""The registry: every capability of a project, looked up by name, exported as tools.

Tool JSON is built once per registry (and per character subset) and reused for every
request: the model sees the same bytes each turn, and the runtime pays nothing per turn.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from capabilities.decorator import capability_of
from capabilities.errors import DefinitionError, Problem, ProjectError
from capabilities.files import load_capability_file
from capabilities.model import Capability
from capabilities.validation import ArgumentProblem, ArgumentsInvalid, ArgumentsOk

__all__ = ["Registry"]


class Registry:
    """An immutable set of capabilities with unique names."""

    def __init__(self, capabilities: Iterable[Capability] = ()) -> None:
        by_name: dict[str, Capability] = {}
        problems: list[Problem] = []
        for cap in capabilities:
            if cap.name in by_name:
                problems.append(_duplicate(cap, by_name[cap.name]))
                continue
            by_name[cap.name] = cap
        if problems:
            raise ProjectError(problems)
        self._by_name = by_name
        self._tools: list[dict[str, Any]] | None = None

    # -- loading -----------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: str | Path, python: Sequence[str] = ()) -> Registry:
        """Load ``capabilities/*.toml`` under ``directory`` plus the listed Python files
        (paths relative to ``directory``). Raises ProjectError listing every problem."""
        root = Path(directory)
        found: list[Capability] = []
        problems: list[Problem] = []
        folder = root / "capabilities"
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            caps, file_problems = load_capability_file(path, _display(path, root))
            found.extend(caps)
            problems.extend(file_problems)
        for relative in python:
            caps, file_problems = _load_python(root / relative, relative)
            found.extend(caps)
            problems.extend(file_problems)
        seen: dict[str, Capability] = {}
        for cap in found:
            if cap.name in seen:
                problems.append(_duplicate(cap, seen[cap.name], root))
            else:
                seen[cap.name] = cap
        if problems:
            raise ProjectError(problems)
        return cls(seen.values())

    # -- lookup ------------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Capability]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"Registry({sorted(self._by_name)})"

    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str) -> Capability:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"unknown capability {name!r}; known: {', '.join(self._by_name)}"
            ) from None

    def subset(self, names: Iterable[str]) -> Registry:
        """The capabilities of one character, in the order given."""
        return Registry(self.get(name) for name in names)

    # -- export ------------------------------------------------------------------------------

    def openai_tools(self) -> list[dict[str, Any]]:
        """``tools`` for a chat-completions request. Built once; treat as read-only."""
        if self._tools is None:
            self._tools = [cap.openai_tool() for cap in self._by_name.values()]
        return self._tools

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        """Plain JSON Schema of each capability's arguments, with its metadata."""
        return {
            cap.name: {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": cap.name,
                "description": cap.description,
                **dict(cap.parameters),
                "x-npc": {
                    "mode": cap.mode,
                    "executor": cap.executor,
                    "timeout_s": cap.timeout_s,
                    "idempotent": cap.idempotent,
                },
            }
            for cap in self._by_name.values()
        }

    # -- validation --------------------------------------------------------------------------

    def validate(self, name: str, arguments: str | bytes | None) -> ArgumentsOk | ArgumentsInvalid:
        """Check a tool call from the model. Never raises on what the model sent."""
        cap = self._by_name.get(name) if isinstance(name, str) else None
        if cap is None:
            available = ", ".join(self._by_name) or "none"
            shown = name if isinstance(name, str) and len(name) <= 80 else repr(name)[:80]
            return ArgumentsInvalid(
                str(shown),
                (ArgumentProblem("", f"unknown tool {shown!r}; available tools: {available}"),),
            )
        return cap.validate(arguments)


def _display(path: Path, root: Path) -> str:
    """A path as the designer knows it: relative to the project, however either was given."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        pass
    if path.is_absolute():
        try:
            return str(path.relative_to(root.resolve()))
        except ValueError:
            pass
    return str(path)


def _shown_source(cap: Capability, root: Path | None) -> tuple[str, int | None]:
    if cap.source is None:
        return "<registry>", None
    file = cap.source.file
    if root is not None and Path(file).is_absolute():
        file = _display(Path(file), root)
    return file, cap.source.line


def _duplicate(cap: Capability, first: Capability, root: Path | None = None) -> Problem:
    file, line = _shown_source(cap, root)
    first_file, first_line = _shown_source(first, root)
    first_at = first_file if first_line is None else f"{first_file}:{first_line}"
    return Problem(
        file, line, cap.name, f"duplicate capability name (first declared at {first_at})"
    )


def _load_python(path: Path, shown: str) -> tuple[list[Capability], list[Problem]]:
    """Import a designer's module in isolation and collect its @capability functions."""
    if not path.is_file():
        return [], [Problem("npc.toml", None, "capabilities.python", f"file not found: {shown}")]
    digest = hashlib.blake2s(str(path.resolve()).encode(), digest_size=6).hexdigest()
    module_name = f"_npc_project_{digest}_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        return [], [Problem(shown, None, None, "cannot import this file as a Python module")]
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except DefinitionError as exc:
        sys.modules.pop(module_name, None)
        p = exc.problem
        return [], [Problem(shown, p.line, p.field, p.message)]
    except Exception as exc:
        sys.modules.pop(module_name, None)
        # A syntax error has no frame in the file: it never ran. It knows its line itself.
        syntax = isinstance(exc, SyntaxError) and exc.filename == str(path)
        line = exc.lineno if syntax and isinstance(exc, SyntaxError) else None
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename == str(path):
                line = frame.lineno
                break
        return [], [
            Problem(shown, line, None, f"error while importing: {type(exc).__name__}: {exc}")
        ]
    caps = []
    for value in vars(module).values():
        record = capability_of(value)
        if record is not None and getattr(value, "__module__", None) == module_name:
            caps.append(record)
    caps.sort(key=lambda c: c.source.line if c.source and c.source.line else 0)
    return caps, []
