"""`npc bridge schema`: print the JSON Schema of the bridge protocol for engine authors.
`npc bridge conformance`: listen like the runtime and grade the first game that connects
(bridge/conformance.py; docs/engines.md says what the game's harness implements)."""

from __future__ import annotations

import argparse
import asyncio
import json
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
    kit = sub.add_parser(
        "conformance",
        help="grade a game's bridge plugin (the conformance kit)",
        description=(
            "Listen on ws://HOST:PORT like `npc serve`, wait for the first game to connect, "
            "drive the scripted conformance sequence against its harness (docs/engines.md) "
            "and print a graded report. Exit 0 when every check passes, 1 otherwise."
        ),
    )
    kit.add_argument("--host", default="127.0.0.1", help="listen host (default 127.0.0.1)")
    kit.add_argument("--port", type=int, default=8765, help="listen port (default 8765; 0 = any)")
    kit.add_argument("--token", help="require this bridge token (header or hello.token)")
    kit.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for each answer (default 5)"
    )
    kit.add_argument(
        "--wait",
        type=float,
        default=120.0,
        help="seconds to wait for a game to connect (default 120; 0 = forever)",
    )
    kit.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    kit.set_defaults(func=run_conformance)
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


def run_conformance(args: argparse.Namespace) -> int:
    from bridge import BridgeConfig
    from bridge.conformance import ConformanceKit

    if args.timeout <= 0 or args.wait < 0:
        print("npc bridge conformance: --timeout must be > 0, --wait >= 0", file=sys.stderr)
        return 2
    try:
        config = BridgeConfig(host=args.host, port=args.port, token=args.token)
    except ValueError as exc:
        print(f"npc bridge conformance: {exc}", file=sys.stderr)
        return 2
    # The report goes to stdout; with --json the progress lines go to stderr.
    out = sys.stderr if args.json else sys.stdout

    def listening(url: str) -> None:
        print(f"npc bridge conformance: listening on {url} (subprotocol npc-bridge.v1)", file=out)
        wait = "forever" if not args.wait else f"up to {args.wait:g} s"
        print(f"start the game's conformance harness against this URL; waiting {wait}", file=out)
        out.flush()

    def connected(session: Any) -> None:
        print(f"game {session.game!r} connected (session {session.id}); grading...", file=out)
        out.flush()

    kit = ConformanceKit(config, timeout_s=args.timeout)
    try:
        report = asyncio.run(
            kit.run(wait_s=args.wait or None, on_listening=listening, on_connected=connected)
        )
    except OSError as exc:
        print(
            f"npc bridge conformance: cannot listen on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 1
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(report.render())
    sys.stdout.flush()
    return 0 if report.passed else 1
