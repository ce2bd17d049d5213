"""Checking the arguments a model sends for a tool call.

A model's output is untrusted input: anything it sends becomes either typed arguments or an
``ArgumentsInvalid`` listing each problem with its field path, short enough to send back to
the model so it can correct itself. Nothing here raises on bad input.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jsonschema
import pydantic

__all__ = [
    "MAX_ARGUMENTS_BYTES",
    "ArgumentChecker",
    "ArgumentProblem",
    "ArgumentsInvalid",
    "ArgumentsOk",
    "JsonSchemaChecker",
    "ModelChecker",
    "parse_arguments",
]

MAX_ARGUMENTS_BYTES = 32 * 1024
"""Bound on one tool call's argument text: NPC actions take a few short values."""

_MAX_PROBLEMS = 8


@dataclass(frozen=True, slots=True)
class ArgumentProblem:
    path: str
    """``x``, ``items[0].name``; empty for the arguments as a whole."""
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(frozen=True, slots=True)
class ArgumentsOk:
    name: str
    args: dict[str, Any]
    """JSON-ready arguments: what goes over the bridge and into transcripts."""
    values: dict[str, Any]
    """Keyword arguments for a Python capability (nested models typed)."""


@dataclass(frozen=True, slots=True)
class ArgumentsInvalid:
    name: str
    problems: tuple[ArgumentProblem, ...]

    @property
    def message(self) -> str:
        """One line for the model: what was wrong, so the next attempt can be right."""
        shown = "; ".join(str(p) for p in self.problems[:_MAX_PROBLEMS])
        more = len(self.problems) - _MAX_PROBLEMS
        suffix = f"; and {more} more" if more > 0 else ""
        return f"invalid arguments for {self.name}: {shown}{suffix}"


class ArgumentChecker(Protocol):
    """Built once per capability; checks decoded JSON arguments."""

    def check(self, name: str, data: dict[str, Any]) -> ArgumentsOk | ArgumentsInvalid: ...


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a valid JSON number")


def parse_arguments(name: str, raw: str | bytes | None) -> dict[str, Any] | ArgumentsInvalid:
    """Decode a tool call's argument text into a JSON object.

    Empty text counts as ``{}``: several providers send it for tools without parameters.
    """
    if raw is None:
        return {}
    if len(raw) > MAX_ARGUMENTS_BYTES:
        return _invalid(
            name, "", f"arguments are too long ({len(raw)} bytes, max {MAX_ARGUMENTS_BYTES})"
        )
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        return _invalid(name, "", "arguments are nested too deeply")
    except UnicodeDecodeError:
        return _invalid(name, "", "arguments are not valid UTF-8")
    except ValueError as exc:
        return _invalid(name, "", f"arguments are not valid JSON ({_short(str(exc))})")
    if not isinstance(data, dict):
        return _invalid(name, "", f"arguments must be a JSON object, got {_json_type(data)}")
    return data


class JsonSchemaChecker:
    """Checks arguments against a designer-written JSON Schema (capability files)."""

    def __init__(self, schema: Mapping[str, Any], optional_fields: Iterable[str] = ()) -> None:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        self._validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
        self._optional = frozenset(optional_fields)

    def check(self, name: str, data: dict[str, Any]) -> ArgumentsOk | ArgumentsInvalid:
        try:
            errors = sorted(self._validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        except RecursionError:
            return _invalid(name, "", "arguments are nested too deeply")
        if errors:
            problems = tuple(
                ArgumentProblem(_format_path(e.absolute_path), _short(e.message)) for e in errors
            )
            return ArgumentsInvalid(name, problems)
        args = {k: v for k, v in data.items() if not (v is None and k in self._optional)}
        return ArgumentsOk(name, args, dict(args))


class ModelChecker:
    """Checks arguments with the pydantic model generated from a Python capability's signature.

    Strict JSON-mode validation: the model must send a number where a number is declared;
    we do not guess that ``"5"`` meant ``5``.
    """

    def __init__(
        self, model: type[pydantic.BaseModel], optional_fields: Iterable[str] = ()
    ) -> None:
        self._model = model
        self._optional = frozenset(optional_fields)

    def check(self, name: str, data: dict[str, Any]) -> ArgumentsOk | ArgumentsInvalid:
        cleaned = {k: v for k, v in data.items() if not (v is None and k in self._optional)}
        try:
            instance = self._model.model_validate_json(json.dumps(cleaned), strict=True)
        except pydantic.ValidationError as exc:
            problems = tuple(
                ArgumentProblem(_format_path(err["loc"]), _pydantic_message(err))
                for err in exc.errors(include_url=False)
            )
            return ArgumentsInvalid(name, problems)
        except RecursionError:
            return _invalid(name, "", "arguments are nested too deeply")
        values = {field: getattr(instance, field) for field in type(instance).model_fields}
        args = instance.model_dump(mode="json", exclude_unset=True)
        return ArgumentsOk(name, args, values)


def _pydantic_message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unexpected field"
    if err["type"] == "missing":
        return "required field is missing"
    return _short(str(err["msg"]))


def _invalid(name: str, path: str, message: str) -> ArgumentsInvalid:
    return ArgumentsInvalid(name, (ArgumentProblem(path, message),))


def _format_path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
