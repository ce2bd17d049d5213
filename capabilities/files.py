"""Capability data files: ``capabilities/*.toml``, one ``[[capability]]`` table each
(design.md 4.1). Every problem found is reported with file, line and field, all at once,
so a designer fixes a file in one pass instead of one error per run."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema

from capabilities._strict import close_objects, to_strict
from capabilities._toml_lines import TomlLines, read_toml
from capabilities.errors import Problem
from capabilities.model import EXECUTORS, MODES, NAME_PATTERN, Capability, Source
from capabilities.validation import JsonSchemaChecker

__all__ = ["load_capability_file"]

_NAME = re.compile(NAME_PATTERN)
_KNOWN_KEYS = frozenset(
    {"name", "description", "mode", "executor", "timeout_s", "idempotent", "parameters"}
)


def load_capability_file(
    path: Path, display: str | None = None
) -> tuple[list[Capability], list[Problem]]:
    """Parse one file. Returns the good capabilities and the problems; never raises on content."""
    shown = display or str(path)
    read = read_toml(path, shown)
    if isinstance(read, Problem):
        return [], [read]
    data, text = read
    lines = TomlLines(text)
    problems: list[Problem] = []
    unknown_top = sorted(set(data) - {"capability"})
    for key in unknown_top:
        problems.append(
            Problem(
                shown,
                lines.key_line(key),
                key,
                "unknown top-level key (expected [[capability]] tables)",
            )
        )
    tables = data.get("capability", [])
    if not isinstance(tables, list):
        problems.append(
            Problem(
                shown,
                lines.key_line("capability"),
                "capability",
                "must be an array of tables: write [[capability]]",
            )
        )
        return [], problems
    starts = lines.array_tables("capability")
    capabilities: list[Capability] = []
    for index, table in enumerate(tables):
        start = starts[index] if index < len(starts) else 1
        end = starts[index + 1] if index + 1 < len(starts) else None
        cap, found = _capability(table, shown, lines, start, end, index)
        problems.extend(found)
        if cap is not None:
            capabilities.append(cap)
    return capabilities, problems


def _capability(
    table: Any, file: str, lines: TomlLines, start: int, end: int | None, index: int
) -> tuple[Capability | None, list[Problem]]:
    problems: list[Problem] = []
    label = f"capability[{index}]"

    def problem(key: str | None, message: str) -> None:
        line = lines.key_line(key, start, end) if key else start
        field = f"{label}.{key}" if key else label
        problems.append(Problem(file, line or start, field, message))

    if not isinstance(table, Mapping):
        problem(None, "must be a table")
        return None, problems
    name = table.get("name")
    if isinstance(name, str) and _NAME.match(name):
        label = name
    for key in sorted(set(table) - _KNOWN_KEYS):
        problem(key, f"unknown key; expected one of {sorted(_KNOWN_KEYS)}")
    if name is None:
        problem(None, "missing required key 'name'")
    elif not isinstance(name, str) or not _NAME.match(name):
        problem("name", f"invalid name {name!r}: must match {NAME_PATTERN}")
    description = table.get("description", "")
    if not isinstance(description, str):
        problem("description", "must be a string")
    elif not description.strip():
        problem(
            "description" if "description" in table else None,
            "a description is required: it is how the model knows when to use this",
        )
    mode = table.get("mode", "call")
    if mode not in MODES:
        problem("mode", f"unknown mode {mode!r}: expected one of {list(MODES)}")
    executor = table.get("executor", "game")
    if executor not in EXECUTORS:
        problem("executor", f"unknown executor {executor!r}: expected one of {list(EXECUTORS)}")
    elif executor == "runtime":
        problem(
            "executor",
            "executor 'runtime' needs Python code: declare it with @capability in a .py module",
        )
    timeout = table.get("timeout_s", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        problem("timeout_s", f"must be a positive number of seconds, got {timeout!r}")
    idempotent = table.get("idempotent", False)
    if not isinstance(idempotent, bool):
        problem("idempotent", f"must be true or false, got {idempotent!r}")
    parameters = table.get("parameters", {"type": "object", "properties": {}})
    schema_problem = _check_schema(parameters)
    if schema_problem:
        problem("parameters", schema_problem)
    if problems:
        return None, problems
    schema = dict(parameters)
    schema.setdefault("properties", {})
    strict = to_strict(schema)
    tool_schema = strict if strict is not None else schema
    optional = frozenset(schema["properties"]) - frozenset(schema.get("required", ()))
    assert isinstance(name, str)
    return Capability(
        name=name,
        description=description.strip(),
        parameters=schema,
        tool_parameters=tool_schema,
        strict=strict is not None,
        mode=mode,
        executor=executor,
        timeout_s=float(timeout),
        idempotent=idempotent,
        source=Source(file, start),
        optional_fields=optional,
        checker=JsonSchemaChecker(close_objects(schema), optional, source_schema=schema)
        if strict is not None
        else JsonSchemaChecker(schema, optional),
    ), []


def _check_schema(parameters: Any) -> str | None:
    if not isinstance(parameters, Mapping):
        return "must be a table holding a JSON Schema of type object"
    if parameters.get("type") != "object":
        return 'the parameters schema must have type = "object"'
    properties = parameters.get("properties", {})
    if not isinstance(properties, Mapping):
        return "properties must be a table"
    required = parameters.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        return "required must be a list of property names"
    missing = [r for r in required if r not in properties]
    if missing:
        return f"required names properties that are not declared: {missing}"
    try:
        jsonschema.Draft202012Validator.check_schema(parameters)
    except jsonschema.SchemaError as exc:
        path = ".".join(str(p) for p in exc.absolute_path)
        where = f" at {path}" if path else ""
        return f"not a valid JSON Schema{where}: {exc.message}"
    return None
