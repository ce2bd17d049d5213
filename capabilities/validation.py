"""Checking the arguments a model sends for a tool call.

A model's output is untrusted input: anything it sends becomes either typed arguments or an
``ArgumentsInvalid`` listing each problem with its field path, short enough to send back to
the model so it can correct itself. Nothing here raises on bad input.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jsonschema
import pydantic

from capabilities.errors import field_path

__all__ = [
    "MAX_ARGUMENTS_BYTES",
    "ArgumentChecker",
    "ArgumentProblem",
    "ArgumentsInvalid",
    "ArgumentsOk",
    "JsonSchemaChecker",
    "ModelChecker",
    "drop_optional_nulls",
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


def _finite_float(token: str) -> float:
    # 1e400 is valid JSON that Python reads as inf: refuse it like Infinity itself.
    value = float(token)
    if not math.isfinite(value):
        raise ValueError(f"{_short(token, 40)} is not a finite number")
    return value


def parse_arguments(name: str, raw: str | bytes | None) -> dict[str, Any] | ArgumentsInvalid:
    """Decode a tool call's argument text into a JSON object.

    Empty text counts as ``{}``: several providers send it for tools without parameters.
    """
    if raw is None:
        return {}
    given: object = raw
    if not isinstance(given, str | bytes):
        # Some providers hand over arguments already decoded: same checks, as JSON text.
        try:
            raw = json.dumps(given, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            return _invalid(name, "", f"arguments must be JSON text, got {type(given).__name__}")
    if len(raw) > MAX_ARGUMENTS_BYTES:
        return _invalid(
            name, "", f"arguments are too long ({len(raw)} bytes, max {MAX_ARGUMENTS_BYTES})"
        )
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
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
    """Checks arguments against a designer-written JSON Schema (capability files).

    With ``source_schema`` (the designer's schema of a strict tool), nulls the model sent for
    optional properties are dropped first, at any depth, then ``schema`` is checked: strict
    mode obliges a model to send them, a non-strict provider may omit them; both are fine.
    """

    def __init__(
        self,
        schema: Mapping[str, Any],
        optional_fields: Iterable[str] = (),
        *,
        source_schema: Mapping[str, Any] | None = None,
    ) -> None:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        self._validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
        self._optional = frozenset(optional_fields)
        self._source = source_schema

    def check(self, name: str, data: dict[str, Any]) -> ArgumentsOk | ArgumentsInvalid:
        try:
            if self._source is not None:
                data = drop_optional_nulls(data, self._source)
            errors = sorted(self._validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        except RecursionError:
            return _invalid(name, "", "arguments are nested too deeply")
        if errors:
            problems = tuple(
                ArgumentProblem(field_path(e.absolute_path), _short(e.message)) for e in errors
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
        self._schema = model.model_json_schema()

    def check(self, name: str, data: dict[str, Any]) -> ArgumentsOk | ArgumentsInvalid:
        try:
            cleaned = drop_optional_nulls(data, self._schema)
            instance = self._model.model_validate_json(json.dumps(cleaned), strict=True)
        except pydantic.ValidationError as exc:
            problems = tuple(
                ArgumentProblem(field_path(err["loc"]), _pydantic_message(err))
                for err in exc.errors(include_url=False)
            )
            return ArgumentsInvalid(name, problems)
        except RecursionError:
            return _invalid(name, "", "arguments are nested too deeply")
        values = {field: getattr(instance, field) for field in type(instance).model_fields}
        args = instance.model_dump(mode="json", exclude_unset=True)
        return ArgumentsOk(name, args, values)


def drop_optional_nulls(data: Any, schema: Mapping[str, Any]) -> Any:
    """Remove ``null`` values of properties the designer made optional, at every depth.

    Strict mode makes the model send every property, ``null`` for the optional ones, nested
    objects included; the function (or the game) expects them absent, so its defaults apply.
    ``schema`` is the designer's schema (where ``required`` still tells optional apart).
    """
    return _drop_nulls(data, schema, schema)


def _drop_nulls(data: Any, schema: Any, root: Mapping[str, Any]) -> Any:
    node = _resolve(schema, root)
    if node is None:
        return data
    if isinstance(data, dict):
        properties = node.get("properties")
        if not isinstance(properties, Mapping):
            return data
        required = node.get("required")
        required = set(required) if isinstance(required, list) else set()
        return {
            key: _drop_nulls(value, properties.get(key), root)
            for key, value in data.items()
            if not (value is None and key in properties and key not in required)
        }
    if isinstance(data, list):
        items = node.get("items")
        return [_drop_nulls(value, items, root) for value in data] if items else data
    return data


def _resolve(schema: Any, root: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Follow local ``$ref`` and single-branch ``anyOf [X, null]`` to the schema of a value."""
    for _ in range(16):
        if not isinstance(schema, Mapping):
            return None
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = root
            for part in ref[2:].split("/"):
                target = target.get(part) if isinstance(target, Mapping) else None
            schema = target
            continue
        branches = schema.get("anyOf")
        if isinstance(branches, list) and "properties" not in schema:
            real = [b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")]
            if len(real) == 1:
                schema = real[0]
                continue
        return schema
    return None


def _pydantic_message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unexpected field"
    if err["type"] == "missing":
        return "required field is missing"
    return _short(str(err["msg"]))


def _invalid(name: str, path: str, message: str) -> ArgumentsInvalid:
    return ArgumentsInvalid(name, (ArgumentProblem(path, message),))


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
