"""``npc caps list|show|check|export``: what a designer runs to see and check capabilities."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from capabilities import Capability
from runtime.services import load_or_report

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    caps = subparsers.add_parser(
        "caps",
        help="list, show, check and export a project's capabilities",
        description="Inspect and check a project's capabilities (TOML files and Python modules).",
    )
    actions = caps.add_subparsers(title="actions", metavar="ACTION")
    caps.set_defaults(func=lambda _args: (caps.print_help(), 2)[1])

    listing = actions.add_parser("list", help="a table: name, mode, executor, parameters")
    listing.add_argument("dir", nargs="?", default=".", help="project directory (default: .)")
    listing.set_defaults(func=_list)

    show = actions.add_parser("show", help="one capability: description, source and schema")
    show.add_argument("name", help="capability name")
    show.add_argument("dir", nargs="?", default=".", help="project directory (default: .)")
    show.set_defaults(func=_show)

    check = actions.add_parser(
        "check", help="exit 0 if the project loads cleanly, 2 with file:line: messages otherwise"
    )
    check.add_argument("dir", nargs="?", default=".", help="project directory (default: .)")
    check.set_defaults(func=_check)

    export = actions.add_parser("export", help="JSON on stdout: OpenAI tools or plain JSON Schema")
    export.add_argument("dir", nargs="?", default=".", help="project directory (default: .)")
    export.add_argument("--format", choices=("openai", "jsonschema"), default="openai")
    export.add_argument("--character", help="only this character's capabilities")
    export.set_defaults(func=_export)


def _signature(cap: Capability) -> str:
    properties = cap.parameters.get("properties", {})
    required = set(cap.parameters.get("required", ()))
    parts = []
    for name, schema in properties.items():
        kind = _type_name(schema)
        parts.append(f"{name}: {kind}" if name in required else f"{name}?: {kind}")
    return ", ".join(parts)


def _type_name(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "any"
    if "enum" in schema:
        return "|".join(json.dumps(v) for v in schema["enum"])
    if "anyOf" in schema:
        return "|".join(_type_name(s) for s in schema["anyOf"])
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list[{_type_name(schema.get('items'))}]"
    return "|".join(kind) if isinstance(kind, list) else str(kind)


def _list(args: argparse.Namespace) -> int:
    project = load_or_report(args.dir)
    if project is None:
        return 2
    rows = [("NAME", "MODE", "EXECUTOR", "PARAMETERS")]
    rows += [(c.name, c.mode, c.executor, _signature(c)) for c in project.registry]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for name, mode, executor, params in rows:
        line = f"{name:<{widths[0]}}  {mode:<{widths[1]}}  {executor:<{widths[2]}}  {params}"
        print(line.rstrip())
    return 0


def _show(args: argparse.Namespace) -> int:
    project = load_or_report(args.dir)
    if project is None:
        return 2
    if args.name not in project.registry:
        known = ", ".join(project.registry.names())
        print(f"unknown capability {args.name!r}; known: {known}", file=sys.stderr)
        return 2
    cap = project.registry.get(args.name)
    users = [cid for cid, ch in project.characters.items() if cap.name in ch.capabilities]
    print(f"{cap.name}({_signature(cap)})")
    print(f"  {cap.description}")
    print(
        f"  mode: {cap.mode}   executor: {cap.executor}   timeout: {cap.timeout_s:g} s   "
        f"idempotent: {'yes' if cap.idempotent else 'no'}   strict: {'yes' if cap.strict else 'no'}"
    )
    if cap.source is not None:
        source = cap.source
        shown = Path(source.file)
        with contextlib.suppress(ValueError):
            shown = shown.resolve().relative_to(project.root.resolve())
        print(f"  declared at: {shown}{'' if source.line is None else f':{source.line}'}")
    print(f"  characters: {', '.join(users) or '(none)'}")
    print("  parameters (JSON Schema):")
    for line in json.dumps(cap.parameters, indent=2).splitlines():
        print(f"    {line}")
    return 0


def _check(args: argparse.Namespace) -> int:
    project = load_or_report(args.dir)
    if project is None:
        return 2
    print(
        f"ok: {len(project.registry)} capabilities, {len(project.characters)} characters "
        f"({', '.join(project.characters)})"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    project = load_or_report(args.dir)
    if project is None:
        return 2
    registry = project.registry
    if args.character:
        if args.character not in project.characters:
            print(
                f"unknown character {args.character!r}; known: {', '.join(project.characters)}",
                file=sys.stderr,
            )
            return 2
        registry = project.tools_for(args.character)
    payload: Any = registry.openai_tools() if args.format == "openai" else registry.json_schemas()
    json.dump(payload, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
