"""Errors of the capabilities package.

Exception tree::

    CapabilityError                  base of everything raised here
    ├── DefinitionError              a @capability function cannot become a tool (raised at import)
    └── ProjectError                 designer files are invalid; carries every Problem found

Argument validation never raises: a bad model answer is data (``ArgumentsInvalid``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["CapabilityError", "DefinitionError", "Problem", "ProjectError", "field_path"]


def field_path(parts: Iterable[object]) -> str:
    """``("npc", 1, "at")`` -> ``npc[1].at``: how designers read a path into their file, and
    how argument problems name a field for the model."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a designer file, located well enough to fix it without searching."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class CapabilityError(Exception):
    """Base of the capabilities package's exceptions."""


class DefinitionError(CapabilityError):
    """A decorated Python function cannot be turned into a capability."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


class ProjectError(CapabilityError):
    """Designer files are invalid. ``problems`` lists all of them, not only the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
