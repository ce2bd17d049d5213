"""``npc chat CHARACTER [DIR]``: talk to a character in the terminal.

Each line you type is heard by the NPC (``player says: "..."``); its speech streams back as
it is generated. There is no game in a terminal: game-executed actions are shown as they are
called and answered ``{"performed": true, "note": "no game in chat"}`` so the conversation
can go on; runtime capabilities (``recall``, ``remember``) run for real.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from typing import Any, Literal

from runtime.runtime import Runtime
from runtime.services import configure_logging, load_or_report
from runtime.session import NpcState
from runtime.store import SQLiteStore, Store

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="talk to a character in the terminal",
        description="Talk to a character. Type a line and press Enter; Ctrl-D to quit.",
    )
    parser.add_argument("character", help="character id, e.g. guard")
    parser.add_argument("dir", nargs="?", default=".", help="project directory (default: .)")
    parser.add_argument("--model", help="model endpoint: offline, replay:PATH or a URL")
    parser.add_argument("--db", help="SQLite file to keep the conversation across runs")
    parser.add_argument("--speaker", default="player", help="who is talking (default: player)")
    parser.set_defaults(func=run)


class _TerminalGame:
    """A GameLink that prints instead of performing."""

    def __init__(self, out: Any) -> None:
        self.out = out

    async def call(
        self,
        npc: str,
        cap: str,
        args: Mapping[str, Any] | None = None,
        *,
        mode: Literal["call", "fire"] = "call",
        timeout_s: float | None = None,
        idempotent: bool = False,
    ) -> Any:
        self.out.write(f"\n  [{npc} -> {cap} {json.dumps(dict(args or {}))}]\n")
        self.out.flush()
        return {"performed": True, "note": "no game in chat"}

    def say(self, npc: str, stream: str, text: str) -> bool:
        self.out.write(text)
        self.out.flush()
        return True

    def say_end(self, npc: str, stream: str, reason: str = "done") -> bool:
        self.out.write("\n" if reason == "done" else f" [{reason}]\n")
        self.out.flush()
        return True

    def status(self, npc: str, state: NpcState) -> bool:
        return True


def run(args: argparse.Namespace) -> int:
    configure_logging("WARNING")
    project = load_or_report(args.dir)
    if project is None:
        return 2
    if args.character not in project.characters:
        known = ", ".join(project.characters)
        print(f"unknown character {args.character!r}; known: {known}", file=sys.stderr)
        return 2
    return asyncio.run(_chat(project, args))


async def _chat(project: Any, args: argparse.Namespace) -> int:
    store: Store | None = SQLiteStore(args.db) if args.db else None
    character = project.characters[args.character]
    print(f"Talking to {character.name} ({character.id}). Ctrl-D to quit.", flush=True)
    loop = asyncio.get_running_loop()
    async with Runtime(project, store=store, base_url=args.model) as runtime:
        session = await runtime.spawn(
            f"chat-{character.id}", character.id, link=_TerminalGame(sys.stdout), start=False
        )
        while True:
            sys.stdout.write("> ")
            sys.stdout.flush()
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            text = line.strip()
            if not text:
                continue
            sys.stdout.write(f"{character.id}: ")
            result = await session.run_turn(f'{args.speaker} says: "{text}"')
            if result.outcome != "done":
                print(f"  ({result.outcome}: {result.error})", flush=True)
    if store is not None:
        await store.close()
    print()
    return 0
