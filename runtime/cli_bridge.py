"""`npc bridge schema`: print the JSON Schema of the bridge protocol for engine authors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bridge",
        help="bridge protocol tools",
        description="Tools for the game bridge (protocol v1, docs/protocol.md).",
    )
    sub = parser.add_subparsers(title="bridge commands", metavar="ACTION")
    schema = sub.add_parser("schema", help="print the JSON Schema of every bridge message")
    schema.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    schema.set_defaults(func=run)
    parser.set_defaults(func=_usage(parser))


def _usage(parser: argparse.ArgumentParser) -> Any:
    def show(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return show


def run(args: argparse.Namespace) -> int:
    from bridge import schema_json

    text = schema_json()
    if args.output is not None:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"npc bridge schema: cannot write {args.output}: {exc}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0
