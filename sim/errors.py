"""Errors of the sim package (the tree is drawn in ``sim/__init__.py``).

Game-rule failures of an action (walking out of bounds, giving an item not held) are not
exceptions: they are data (``ActionFailed`` in ``sim.world``), sent back to the model as a failed
tool result, because a model asking for something impossible is normal play, not a bug.
"""

from __future__ import annotations

from collections.abc import Sequence

from capabilities.errors import Problem

__all__ = ["Problem", "SimError", "SimFileError", "SimRunError"]


class SimError(Exception):
    """Base of everything the sim package raises."""


class SimFileError(SimError):
    """``world.toml`` or a scenario file is invalid. ``problems`` lists every problem found,
    each naming file, line and field, so a designer fixes them all in one pass."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class SimRunError(SimError):
    """The run itself could not go on (the bridge refused the game, the connection died and
    did not come back). Scenario failures are not errors: they are results."""
