"""``@capability``: a typed Python function becomes a capability record.

The signature is the schema: type hints go through pydantic (bounds with
``Annotated[float, Field(ge=0)]``, ``Literal`` and ``Enum`` choices, nested models, lists,
optionals), the Google-style docstring gives the descriptions. A first parameter annotated
``CapabilityContext`` (or named ``ctx``/``context``) is the runtime's context, not an argument.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast, get_type_hints, overload

import pydantic

from capabilities._docstrings import parse_docstring
from capabilities._strict import to_strict
from capabilities.errors import DefinitionError, Problem
from capabilities.model import (
    EXECUTORS,
    MODES,
    NAME_PATTERN,
    Capability,
    CapabilityContext,
    Executor,
    Mode,
    Source,
)
from capabilities.validation import ModelChecker

__all__ = ["CAPABILITY_ATTRIBUTE", "capability", "capability_of"]

CAPABILITY_ATTRIBUTE = "__npc_capability__"
"""The decorated function keeps working as a function; its record rides on this attribute."""

_NAME = re.compile(NAME_PATTERN)
_CONTEXT_NAMES = ("ctx", "context")
F = TypeVar("F", bound=Callable[..., Any])


class _Decorator(Protocol):
    """``@capability(...)``: generic per call, so the decorated function keeps its own type
    (a plain ``Callable[[F], F]`` return would bind F to its bound and lose it)."""

    def __call__(self, fn: F, /) -> F: ...


@overload
def capability(func: F, /) -> F: ...


@overload
def capability(
    *,
    name: str | None = None,
    description: str | None = None,
    mode: Mode = "call",
    executor: Executor = "game",
    timeout_s: float = 30.0,
    idempotent: bool = False,
) -> _Decorator: ...


def capability(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    mode: Mode = "call",
    executor: Executor = "game",
    timeout_s: float = 30.0,
    idempotent: bool = False,
) -> F | _Decorator:
    """Declare what an NPC can do.

    ``executor="game"`` (default): the function is a typed declaration; its body never runs,
    the game performs the action. ``executor="runtime"``: the runtime calls the function.
    """

    def decorate(fn: F) -> F:
        record = build_capability(
            fn,
            name=name,
            description=description,
            mode=mode,
            executor=executor,
            timeout_s=timeout_s,
            idempotent=idempotent,
        )
        setattr(fn, CAPABILITY_ATTRIBUTE, record)
        return fn

    return decorate(func) if func is not None else cast("_Decorator", decorate)


def capability_of(obj: object) -> Capability | None:
    """The record of a decorated function, or None."""
    record = getattr(obj, CAPABILITY_ATTRIBUTE, None)
    return record if isinstance(record, Capability) else None


def build_capability(
    fn: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    mode: Mode,
    executor: Executor,
    timeout_s: float,
    idempotent: bool,
) -> Capability:
    cap_name = name if name is not None else fn.__name__
    where = _source(fn)
    if not _NAME.match(cap_name):
        raise _error(where, "name", f"capability name {cap_name!r} must match {NAME_PATTERN}")
    if mode not in MODES:
        raise _error(where, cap_name, f"mode must be one of {MODES}, got {mode!r}")
    if executor not in EXECUTORS:
        raise _error(where, cap_name, f"executor must be one of {EXECUTORS}, got {executor!r}")
    if not timeout_s > 0:
        raise _error(where, cap_name, "timeout_s must be positive")
    summary, param_docs = parse_docstring(fn.__doc__)
    model, takes_context, optional = _arguments_model(fn, cap_name, param_docs, where)
    if takes_context and executor == "game":
        raise _error(
            where, cap_name, "a context parameter only makes sense with executor='runtime'"
        )
    schema = _clean_schema(model.model_json_schema())
    strict = to_strict(schema)
    return Capability(
        name=cap_name,
        description=description if description is not None else summary,
        parameters=schema,
        tool_parameters=strict if strict is not None else schema,
        strict=strict is not None,
        mode=mode,
        executor=executor,
        timeout_s=float(timeout_s),
        idempotent=idempotent,
        function=fn if executor == "runtime" else None,
        takes_context=takes_context,
        source=where,
        optional_fields=frozenset(optional),
        checker=ModelChecker(model, optional),
    )


def _arguments_model(
    fn: Callable[..., Any], cap_name: str, docs: dict[str, str], where: Source
) -> tuple[type[pydantic.BaseModel], bool, list[str]]:
    signature = inspect.signature(fn)
    try:
        hints = get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise _error(where, cap_name, f"cannot resolve type hints: {exc}") from exc
    params = list(signature.parameters.values())
    takes_context = bool(params) and (
        hints.get(params[0].name) is CapabilityContext or params[0].name in _CONTEXT_NAMES
    )
    if takes_context:
        params = params[1:]
    fields: dict[str, Any] = {}
    optional: list[str] = []
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise _error(where, cap_name, "*args/**kwargs cannot be tool parameters")
        if param.name not in hints:
            raise _error(where, cap_name, f"parameter {param.name!r} needs a type hint")
        default: Any = ... if param.default is param.empty else param.default
        if default is not ...:
            optional.append(param.name)
        # Only pass a description we have: an explicit None would erase one given with
        # Annotated[..., Field(description=...)].
        info = (
            pydantic.Field(default=default, description=docs[param.name])
            if param.name in docs
            else pydantic.Field(default=default)
        )
        fields[param.name] = (hints[param.name], info)
    try:
        model = pydantic.create_model(
            f"{cap_name}_arguments",
            __config__=pydantic.ConfigDict(extra="forbid", allow_inf_nan=False),
            **fields,
        )
        model.model_json_schema()
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
        raise _error(where, cap_name, f"unsupported parameter type: {exc}") from exc
    return cast("type[pydantic.BaseModel]", model), takes_context, optional


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's generated titles: noise for the model, tokens on every request."""

    def walk(node: Any, in_properties: bool = False) -> Any:
        if isinstance(node, dict):
            return {
                key: walk(value, key in ("properties", "$defs"))
                for key, value in node.items()
                if in_properties or key != "title"
            }
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    cleaned = walk(schema)
    cleaned.setdefault("properties", {})
    return cast("dict[str, Any]", cleaned)


def _source(fn: Callable[..., Any]) -> Source:
    try:
        file = inspect.getsourcefile(fn) or "<unknown>"
        line: int | None = inspect.getsourcelines(fn)[1]
    except (OSError, TypeError):
        file, line = getattr(fn, "__module__", "<unknown>"), None
    return Source(file, line)


def _error(where: Source, field: str, message: str) -> DefinitionError:
    return DefinitionError(Problem(where.file, where.line, field, message))
