"""``npc serve [DIR]``: the bridge server for games, the runtime behind it, and (once
configured) the OpenAI-compatible character endpoint. Stops cleanly on SIGINT/SIGTERM:
in-flight turns are cancelled, the database is flushed and closed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from bridge import BridgeServer
from runtime.runtime import Runtime
from runtime.services import bridge_config, configure_logging, default_db_path, load_or_report
from runtime.store import SQLiteStore

__all__ = ["add_parser"]

logger = logging.getLogger("runtime.serve")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the runtime: the bridge for games and the character endpoint",
        description=(
            "Serve a project: games connect to the bridge (ws://HOST:PORT, subprotocol "
            "npc-bridge.v1); each NPC they spawn gets a mind. Ctrl-C stops cleanly."
        ),
    )
    parser.add_argument("dir", nargs="?", default=".", help="project directory (default: .)")
    parser.add_argument("--host", help="bridge host (default: npc.toml [bridge] host)")
    parser.add_argument("--port", type=int, help="bridge port (default: npc.toml, 8765; 0 = any)")
    parser.add_argument("--http-port", type=int, help="character endpoint port (default: 8080)")
    parser.add_argument("--no-http", action="store_true", help="do not serve the HTTP endpoint")
    parser.add_argument("--model", help="model endpoint: offline, replay:PATH or a URL")
    parser.add_argument("--db", help="SQLite file (default: DIR/.npc/npc.sqlite3)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    parser.add_argument(
        "--viewer",
        nargs="?",
        const=8771,
        type=int,
        metavar="PORT",
        help="serve the live viewer on http://127.0.0.1:PORT (default 8771; 0 = any): "
        "NPCs, statuses, speech and calls as they happen",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    project = load_or_report(args.dir)
    if project is None:
        return 2
    return asyncio.run(_serve(project, args))


async def _serve(project: Any, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    viewer = None
    if args.viewer is not None:
        from sim.live import ServeTap, start_viewer

        try:
            viewer = await start_viewer(
                args.viewer, mode="serve", title=f"npc serve {project.root.name}"
            )
        except OSError as exc:
            print(
                f"npc serve: cannot serve the viewer on port {args.viewer}: {exc}", file=sys.stderr
            )
            return 1
    store = SQLiteStore(args.db or default_db_path(project))
    config = bridge_config(project, host=args.host, port=args.port)
    on_record = viewer.feed.push if viewer is not None else None
    runtime = Runtime(project, store=store, base_url=args.model, on_record=on_record)
    handler: Any = runtime if viewer is None else ServeTap(runtime, viewer.feed)
    try:
        async with BridgeServer(config, handler) as server:
            logger.info(
                "bridge listening on %s (%d characters: %s)%s",
                server.url,
                len(project.characters),
                ", ".join(project.characters),
                "" if config.token else "; no token set: any local game may connect",
            )
            http_task = None
            if not args.no_http:
                http_task = await _start_http(project, runtime, args)
            print(f"npc serve: bridge {server.url}", flush=True)
            if viewer is not None:
                print(f"npc serve: viewer at {viewer.url}", flush=True)
            await stop.wait()
            logger.info("shutting down")
            # Cancel the turns while the games are still connected: in-flight calls get a
            # `cancel`, and no turn goes on with DISCONNECTED results once the bridge stops.
            await runtime.aclose()
            if http_task is not None:
                http_task.cancel()
                with contextlib.suppress(BaseException):
                    await http_task
    finally:
        await runtime.aclose()
        await store.close()
        if viewer is not None:
            await viewer.close()
    return 0


async def _start_http(project: Any, runtime: Runtime, args: argparse.Namespace) -> Any:
    try:
        from runtime.endpoint import create_app, serve_http
    except ImportError:  # pragma: no cover - the endpoint package is part of the distribution
        logger.warning("the character endpoint is not available in this build")
        return None
    settings = project.config.http
    port = settings.port if args.http_port is None else args.http_port
    app = create_app(project, runtime)
    task = asyncio.create_task(serve_http(app, settings.host, port))
    logger.info("character endpoint on http://%s:%d/v1", settings.host, port)
    return task
