"""``npc offline-model [DIR] --port P``: the offline model on a port, for any OpenAI client.

Serves the project's characters (``model`` = character id) so tools outside this process —
the openai SDK, curl, another engine's test harness — get the same deterministic answers the
runtime gets in-process with ``base_url = "offline"``. Prints the base URL once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from runtime.offline import (
    Misbehaviour,
    OfflineConfigError,
    OfflineModel,
    offline_characters,
    serve_offline_model,
)
from runtime.services import load_or_report

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "offline-model",
        help="serve the deterministic offline model (OpenAI-compatible) on a port",
        description=(
            "Serve the embedded offline model as an OpenAI-compatible endpoint: "
            "POST /v1/chat/completions with model = a character id of the project, "
            "GET /v1/models lists them."
        ),
    )
    parser.add_argument("dir", nargs="?", default=".", help="project directory (default: .)")
    parser.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port, 0 = any (default: 8090)")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: npc.toml or 0)")
    parser.add_argument(
        "--misbehave",
        metavar="RATE[:KIND,...]",
        help="fail on purpose at this rate, e.g. 0.2 or 0.2:http_429,invalid_json",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    project = load_or_report(args.dir)
    if project is None:
        return 2
    try:
        misbehaviour = Misbehaviour.parse(args.misbehave) if args.misbehave else None
    except OfflineConfigError as exc:
        print(f"--misbehave: {exc}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else project.config.model.seed
    app = OfflineModel(offline_characters(project), seed=seed, misbehaviour=misbehaviour)

    def ready(host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        print(f"offline model: http://{shown}:{port}/v1", flush=True)

    try:
        asyncio.run(serve_offline_model(app, args.host, args.port, on_ready=ready))
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
