"""capabilities: what an NPC can do.

Designers declare capabilities as typed Python functions (``@capability``) or as
``capabilities/*.toml`` data files; the ``Registry`` turns them into strict JSON-schema
tools for the model and validates the arguments the model sends back.

Exception tree::

    CapabilityError
    ├── DefinitionError      a @capability function cannot become a tool (carries a Problem)
    └── ProjectError         designer files are invalid (carries every Problem: file, line, field)

Bad arguments from a model are data, not exceptions: ``Registry.validate`` returns
``ArgumentsOk`` or ``ArgumentsInvalid``.
"""

from capabilities.decorator import capability, capability_of
from capabilities.errors import CapabilityError, DefinitionError, Problem, ProjectError
from capabilities.model import (
    NAME_PATTERN,
    Capability,
    CapabilityContext,
    Executor,
    GameHandle,
    Memory,
    Mode,
    Source,
)
from capabilities.registry import Registry
from capabilities.validation import ArgumentProblem, ArgumentsInvalid, ArgumentsOk

__all__ = [
    "NAME_PATTERN",
    "ArgumentProblem",
    "ArgumentsInvalid",
    "ArgumentsOk",
    "Capability",
    "CapabilityContext",
    "CapabilityError",
    "DefinitionError",
    "Executor",
    "GameHandle",
    "Memory",
    "Mode",
    "Problem",
    "ProjectError",
    "Registry",
    "Source",
    "capability",
    "capability_of",
]
