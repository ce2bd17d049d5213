"""The capability record: everything the runtime needs to offer, check and execute one action,
built once when the project loads (pydantic-ai's lesson: schemas are built once, not per call)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from capabilities._strict import close_objects
from capabilities.validation import (
    ArgumentChecker,
    ArgumentsInvalid,
    ArgumentsOk,
    JsonSchemaChecker,
    parse_arguments,
)

__all__ = [
    "EXECUTORS",
    "MODES",
    "NAME_PATTERN",
    "Capability",
    "CapabilityContext",
    "Executor",
    "GameHandle",
    "Memory",
    "Mode",
    "Source",
]

Mode = Literal["call", "fire"]
Executor = Literal["game", "runtime"]
MODES: tuple[Mode, ...] = ("call", "fire")
EXECUTORS: tuple[Executor, ...] = ("game", "runtime")
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a capability was declared, so errors and `npc caps show` can point at it."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"


class GameHandle(Protocol):
    """What a runtime-executed capability may ask of the game: another capability call."""

    async def call(
        self,
        capability: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Any: ...


class Memory(Protocol):
    """The NPC's long-term memory (facts learned in conversation), backed by the runtime's store."""

    async def remember(self, fact: str) -> None: ...

    async def recall(self, query: str, limit: int = 5) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class CapabilityContext:
    """First parameter of a runtime-executed capability. Never part of the tool schema."""

    npc: str
    character: str
    knowledge: Sequence[str]
    game: GameHandle
    memory: Memory
    world: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Capability:
    """One action an NPC can take.

    ``parameters`` is the JSON Schema the designer declared (or pydantic generated);
    ``tool_parameters`` is what the model is shown: the strict-mode form when the schema
    allows it (``strict`` true), else the schema unchanged. Arguments are validated against
    the contract the model was given (closed objects), except that optional fields may be
    omitted or sent as null (strict mode's way of omitting them).
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    tool_parameters: Mapping[str, Any]
    strict: bool
    mode: Mode = "call"
    executor: Executor = "game"
    timeout_s: float = 30.0
    idempotent: bool = False
    function: Callable[..., Any | Awaitable[Any]] | None = None
    takes_context: bool = False
    source: Source | None = None
    optional_fields: frozenset[str] = frozenset()
    """Top-level fields the designer made optional; strict mode sends them as null."""
    checker: ArgumentChecker | None = None
    """Built once with the record; defaults to checking against ``tool_parameters``."""

    def validate(self, arguments: str | bytes | None) -> ArgumentsOk | ArgumentsInvalid:
        """Turn a tool call's raw argument text into typed arguments or a list of problems."""
        data = parse_arguments(self.name, arguments)
        if isinstance(data, ArgumentsInvalid):
            return data
        checker = self.checker or (
            JsonSchemaChecker(
                close_objects(self.parameters), self.optional_fields, source_schema=self.parameters
            )
            if self.strict
            else JsonSchemaChecker(self.parameters, self.optional_fields)
        )
        return checker.check(self.name, data)

    def openai_tool(self) -> dict[str, Any]:
        function: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters": self.tool_parameters,
        }
        if self.strict:
            function["strict"] = True
        return {"type": "function", "function": function}
