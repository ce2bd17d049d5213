"""The `npc` command: the only composition root of the project.

Each sub-command lives in its own module (`runtime.cli_*`) exposing
``add_parser(subparsers)``; the parser it registers sets ``func`` to a callable
taking the parsed namespace and returning the exit code. Exit codes (design.md
4.6): 0 ok, 1 scenario/check failed, 2 usage or invalid project files.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import cast

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

# Sub-command modules, in the order `npc --help` lists them.
_COMMAND_MODULES: tuple[str, ...] = (
    "runtime.cli_caps",
    "runtime.cli_sim",
    "runtime.cli_serve",
    "runtime.cli_chat",
    "runtime.cli_bridge",
    "runtime.cli_offline",
    "runtime.cli_complete",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="npc",
        description=(
            "npcagent: give game NPCs a mind. Declare capabilities, connect a game over the "
            "bridge, run characters on any OpenAI-compatible model or fully offline."
        ),
        epilog="Run `npc COMMAND --help` for the options of one command.",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = cast("Callable[[argparse.Namespace], int] | None", getattr(args, "func", None))
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `npc caps export | head`: the reader left; that is not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
