"""Wiring shared by ``npc serve`` and ``npc sim``: project settings -> bridge config,
database, logging. Kept out of the CLI modules so both build the parts the same way."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from bridge import BridgeConfig
from capabilities import ProjectError
from runtime.project import Project, load_project

__all__ = ["bridge_config", "configure_logging", "default_db_path", "load_or_report"]


def bridge_config(
    project: Project,
    *,
    host: str | None = None,
    port: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> BridgeConfig:
    """The bridge settings of npc.toml, with the token read from the variable it names."""
    settings = project.config.bridge
    env = os.environ if environ is None else environ
    values = settings.model_dump(exclude={"token_env"})
    values["allowed_origins"] = tuple(settings.allowed_origins)
    values["token"] = env.get(settings.token_env) or None
    if host is not None:
        values["host"] = host
    if port is not None:
        values["port"] = port
    return BridgeConfig.from_mapping(values)


def default_db_path(project: Project) -> Path:
    return project.root / ".npc" / "npc.sqlite3"


def configure_logging(level: str = "INFO") -> None:
    """One line per record on stderr; chatty libraries kept at WARNING."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in ("httpx2", "httpcore2", "websockets", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)


def load_or_report(directory: str | Path) -> Project | None:
    """The project, or None after printing every problem (``file:line: field: message``) on
    stderr: what each command does before exiting 2 on invalid designer files."""
    try:
        return load_project(Path(directory))
    except ProjectError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in {directory}", file=sys.stderr)
        return None
