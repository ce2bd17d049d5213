"""The system prompt, built from the character file and what the NPC perceives.

The template is plain ``string.Template`` text so designers can override it per project
(``[prompt] template = "prompt.txt"`` in npc.toml) without learning a templating language.
Placeholders: ``$name``, ``$persona``, ``$goals``, ``$knowledge``, ``$state``,
``$perceptions``, ``$npc``. Messages with role ``system`` from anywhere else are ignored:
the character file is the only source of the NPC's instructions.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from runtime.project import Character, Project

__all__ = ["DEFAULT_TEMPLATE", "PromptBuilder", "render_event"]

DEFAULT_TEMPLATE = """\
You are $name. $persona

Your goals:
$goals

What you know:
$knowledge

Your current state: $state

What you noticed recently:
$perceptions

You are a character in a game world. Act through your tools when an action is needed; when you \
speak, stay in character and keep it to one or two short sentences. Never mention being an AI."""


def _bullets(items: Iterable[str]) -> str:
    lines = [f"- {item}" for item in items]
    return "\n".join(lines) if lines else "- (nothing)"


def render_event(kind: str, data: Mapping[str, Any]) -> str:
    """One perception as a line of text for the model.

    ``heard`` renders as ``<speaker> says: "<text>"`` (the offline model's rules match on it).
    """
    if kind == "heard":
        speaker = str(data.get("speaker") or "someone")
        return f'{speaker} says: "{data.get("text", "")}"'
    if kind == "saw":
        where = data.get("where")
        at = f" at {json.dumps(where)}" if where is not None else ""
        return f"You see {data.get('what', 'something')}{at}."
    if kind == "state":
        return f"Your state is now {json.dumps(dict(data), ensure_ascii=False, sort_keys=True)}."
    body = json.dumps(dict(data), ensure_ascii=False, sort_keys=True)
    return f"[{kind}] {body}"


class PromptBuilder:
    """Renders one character's system prompt; the static parts are rendered once."""

    def __init__(self, character: Character, template: str = DEFAULT_TEMPLATE) -> None:
        self._template = string.Template(template)
        self._static = {
            "name": character.name,
            "persona": character.persona,
            "goals": _bullets(character.goals),
            "knowledge": _bullets(character.knowledge),
        }
        self._cache_key: tuple[str, str, str] | None = None
        self._cache_value = ""

    @classmethod
    def for_project(cls, project: Project, character: Character) -> PromptBuilder:
        template = DEFAULT_TEMPLATE
        if project.config.prompt.template:
            template = (Path(project.root) / project.config.prompt.template).read_text("utf-8")
        return cls(character, template)

    def render(self, npc: str, state: Mapping[str, Any], perceptions: Iterable[str]) -> str:
        state_text = (
            json.dumps(dict(state), ensure_ascii=False, sort_keys=True) if state else "unknown"
        )
        perception_text = _bullets(perceptions)
        # The NPC is part of the key: one builder serves every NPC of a character.
        key = (npc, state_text, perception_text)
        if key == self._cache_key:
            return self._cache_value
        value = self._template.safe_substitute(
            self._static, npc=npc, state=state_text, perceptions=perception_text
        )
        self._cache_key, self._cache_value = key, value
        return value
