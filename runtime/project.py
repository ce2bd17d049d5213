"""A project directory: ``npc.toml``, ``characters/*.toml`` and the capabilities.

Loading checks everything a designer can get wrong and reports all of it at once, each
problem naming file, line and field (``capabilities.ProjectError``). The runtime, the CLI
and the simulator all start from ``load_project``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from capabilities import NAME_PATTERN, ArgumentsInvalid, Problem, ProjectError, Registry
from capabilities._toml_lines import TomlLines, read_toml
from capabilities.errors import field_path

__all__ = [
    "BridgeSettings",
    "CapabilitySettings",
    "Character",
    "HttpSettings",
    "LimitSettings",
    "ModelOverrides",
    "ModelSettings",
    "OfflineRule",
    "Project",
    "ProjectConfig",
    "PromptSettings",
    "load_project",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class ProjectInfo(_Strict):
    name: str = "npc-project"


class CapabilitySettings(_Strict):
    python: list[str] = Field(default_factory=list)
    """Python files with @capability functions, relative to the project directory."""


class ModelSettings(_Strict):
    base_url: str = "offline"
    """``offline`` (the embedded model), ``replay:PATH`` (a cassette) or an endpoint URL."""
    model: str = "offline"
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(64, ge=1, le=10_000)
    timeout_s: float = Field(60.0, gt=0)
    connect_timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    include_usage: bool = True
    """Send ``stream_options.include_usage``; turn off for providers that reject it."""
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    record: str | None = None
    """Cassette file to record model traffic into (see ``npc sim --record``)."""
    seed: int = 0
    """Seed of the offline model."""
    misbehave: str | None = None
    """Make the offline model misbehave on purpose, for chaos runs: ``"RATE"`` or
    ``"RATE:kind,..."`` (kinds: invalid_json, unknown_tool, missing_id, slow,
    error_mid_stream, http_429, http_500)."""

    @field_validator("misbehave")
    @classmethod
    def _valid_misbehaviour(cls, value: str | None) -> str | None:
        if value is not None:
            from runtime.offline.misbehaviour import Misbehaviour

            try:
                Misbehaviour.parse(value)
            except ValueError as exc:
                raise ValueError(str(exc)) from None
        return value

    extra: dict[str, Any] = Field(default_factory=dict)
    """Provider-specific request fields passed through unchanged."""


class BridgeSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    token_env: str = "NPC_BRIDGE_TOKEN"
    allowed_origins: list[str] = Field(default_factory=list)
    max_frame_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    hello_timeout_s: float = Field(10.0, gt=0)
    ping_interval_s: float = Field(20.0, gt=0)
    ping_timeout_s: float = Field(20.0, gt=0)
    send_timeout_s: float = Field(5.0, gt=0)
    max_in_flight: int = Field(256, ge=1)
    events_per_s: float = Field(200.0, gt=0)
    event_burst: int = Field(400, ge=1)
    resume_window_s: float = Field(30.0, ge=0)


class HttpSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    api_keys_env: str = "NPC_API_KEYS"
    max_body_bytes: int = Field(1024 * 1024, ge=1024)


class LimitSettings(_Strict):
    steps_per_turn: int = Field(8, ge=1, le=100)
    history_messages: int = Field(40, ge=2, le=10_000)
    history_tokens: int = Field(6000, ge=100)
    """Approximate token budget of the history (4 characters per token)."""
    tool_retries: int = Field(2, ge=0, le=20)
    """Invalid tool calls tolerated per capability per turn before the turn fails."""
    event_queue: int = Field(32, ge=1, le=10_000)
    perceptions_in_prompt: int = Field(10, ge=0, le=1000)
    npc_replies: int = Field(3, ge=0, le=1000)
    """Turns in a row an NPC takes in answer to other NPCs only; then NPC speech is context
    until a player (or any non-NPC) speaks. Bounds NPC-to-NPC conversations."""


class PromptSettings(_Strict):
    template: str | None = None
    """File (relative to the project) overriding the system prompt template."""


class ProjectConfig(_Strict):
    project: ProjectInfo = Field(default_factory=ProjectInfo)
    capabilities: CapabilitySettings = Field(default_factory=CapabilitySettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    bridge: BridgeSettings = Field(default_factory=BridgeSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    prompt: PromptSettings = Field(default_factory=PromptSettings)


class ModelOverrides(_Strict):
    base_url: str | None = None
    model: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    extra: dict[str, Any] = Field(default_factory=dict)


class OfflineRule(_Strict):
    when: list[str] = Field(min_length=1)
    call: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    say: str | None = None
    after_result: str | None = None

    @field_validator("when", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class OfflineSettings(_Strict):
    rule: list[OfflineRule] = Field(default_factory=list)


class Character(_Strict):
    id: str = Field(pattern=NAME_PATTERN)
    name: str = Field(min_length=1)
    persona: str = Field(min_length=1)
    goals: list[str] = Field(default_factory=list)
    knowledge: list[str] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)
    triggers: list[str] = Field(default_factory=lambda: ["heard"])
    model: ModelOverrides = Field(default_factory=ModelOverrides)
    offline: OfflineSettings = Field(default_factory=OfflineSettings)


@dataclass(frozen=True)
class Project:
    root: Path
    config: ProjectConfig
    registry: Registry
    characters: Mapping[str, Character]
    character_files: Mapping[str, str]
    """Character id -> file that declared it (relative to root), for messages."""

    def tools_for(self, character_id: str) -> Registry:
        return self.registry.subset(self.characters[character_id].capabilities)


M = TypeVar("M", bound=BaseModel)


def load_project(directory: str | Path) -> Project:
    """Load and check a whole project. Raises ProjectError listing every problem found."""
    root = Path(directory)
    if not root.is_dir():
        raise ProjectError([Problem(str(root), None, None, "not a directory")])
    problems: list[Problem] = []
    config = _load_toml_model(root / "npc.toml", "npc.toml", ProjectConfig, problems, optional=True)
    # An invalid npc.toml may list Python modules we could not read: checking characters
    # against the capabilities found without them would report each one as unknown.
    cross_check = config is not None or not (root / "npc.toml").exists()
    if config is None:
        config = ProjectConfig()
    registry: Registry | None
    try:
        registry = Registry.load(root, config.capabilities.python)
    except ProjectError as exc:
        problems.extend(_locate_in_config(root / "npc.toml", exc.problems))
        registry = None
    characters: dict[str, Character] = {}
    files: dict[str, str] = {}
    folder = root / "characters"
    for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
        shown = str(path.relative_to(root))
        character = _load_toml_model(path, shown, Character, problems)
        if character is None:
            continue
        lines = TomlLines(path.read_text(encoding="utf-8"))
        if character.id in characters:
            problems.append(
                Problem(
                    shown,
                    lines.key_line("id"),
                    "id",
                    f"duplicate character id {character.id!r} (also in {files[character.id]})",
                )
            )
            continue
        characters[character.id] = character
        files[character.id] = shown
        if registry is not None and cross_check:
            problems.extend(_check_character(character, registry, shown, lines))
    template = config.prompt.template
    if template is not None and not (root / template).is_file():
        line = _npc_toml_line(root, "template")
        problems.append(Problem("npc.toml", line, "prompt.template", f"file not found: {template}"))
    if not characters and not problems:
        problems.append(
            Problem(
                "characters/", None, None, "the project declares no characters (characters/*.toml)"
            )
        )
    if problems:
        raise ProjectError(problems)
    assert registry is not None
    return Project(root, config, registry, characters, files)


def _check_character(
    character: Character, registry: Registry, file: str, lines: TomlLines
) -> list[Problem]:
    problems = []
    line = lines.key_line("capabilities")
    seen: set[str] = set()
    for index, name in enumerate(character.capabilities):
        if name not in registry:
            problems.append(
                Problem(
                    file,
                    line,
                    f"capabilities[{index}]",
                    f"unknown capability {name!r}; known: {', '.join(registry.names())}",
                )
            )
        elif name in seen:
            problems.append(
                Problem(file, line, f"capabilities[{index}]", f"{name!r} is listed twice")
            )
        seen.add(name)
    rule_lines = lines.array_tables("offline.rule")
    for index, rule in enumerate(character.offline.rule):
        if rule.call is not None and rule.call not in character.capabilities:
            at = rule_lines[index] if index < len(rule_lines) else None
            problems.append(
                Problem(
                    file,
                    at,
                    f"offline.rule[{index}].call",
                    f"{rule.call!r} is not one of this character's capabilities",
                )
            )
        elif rule.call is not None:
            result = registry.validate(rule.call, json.dumps(rule.args))
            if isinstance(result, ArgumentsInvalid):
                at = rule_lines[index] if index < len(rule_lines) else None
                problems.append(Problem(file, at, f"offline.rule[{index}].args", result.message))
    return problems


def _locate_in_config(path: Path, problems: Sequence[Problem]) -> list[Problem]:
    """The registry reports npc.toml problems (a missing Python file) without a line: it never
    reads npc.toml. Find the line of the field here, where the text is at hand."""
    if not any(p.file == "npc.toml" and p.line is None and p.field for p in problems):
        return list(problems)
    try:
        lines = TomlLines(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return list(problems)
    return [
        Problem(p.file, _line_for(lines, p.field.split(".")), p.field, p.message)
        if p.file == "npc.toml" and p.line is None and p.field
        else p
        for p in problems
    ]


def _load_toml_model(
    path: Path, shown: str, model: type[M], problems: list[Problem], optional: bool = False
) -> M | None:
    if not path.exists():
        if not optional:
            problems.append(Problem(shown, None, None, "file not found"))
        return None
    read = read_toml(path, shown)
    if isinstance(read, Problem):
        problems.append(read)
        return None
    data, text = read
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        lines = TomlLines(text)
        for err in exc.errors(include_url=False):
            loc = [str(part) for part in err["loc"]]
            # offline.rule[1].when, as _check_character writes it (not offline.rule.1.when)
            field = field_path(err["loc"]) or None
            line = _line_for(lines, loc)
            message = "unknown key" if err["type"] == "extra_forbidden" else str(err["msg"])
            if err["type"] == "missing":
                message = "required key is missing"
            problems.append(Problem(shown, line, field, message))
        return None


def _line_for(lines: TomlLines, loc: list[str]) -> int | None:
    """Best line for a pydantic location: the deepest key we can find in the text."""
    best = None
    start = 1
    for index, part in enumerate(loc):
        if part.isdigit():
            # An index into an array of tables ([[offline.rule]]): start at that table.
            tables = lines.array_tables(".".join(p for p in loc[:index] if not p.isdigit()))
            if int(part) < len(tables):
                best = start = tables[int(part)]
            continue
        found = lines.key_line(part, start)
        if found is None:
            break
        best, start = found, found
    return best


def _npc_toml_line(root: Path, key: str) -> int | None:
    try:
        return TomlLines((root / "npc.toml").read_text(encoding="utf-8")).key_line(key)
    except OSError:
        return None
