"""Offline characters from a loaded project (`runtime.project`)."""

from __future__ import annotations

from collections.abc import Mapping

from runtime.offline.character import OfflineCharacter, OfflineRule
from runtime.project import Character, Project

__all__ = ["offline_character", "offline_characters"]


def offline_character(character: Character) -> OfflineCharacter:
    """The offline model's view of a character file (rules in file order)."""
    return OfflineCharacter(
        id=character.id,
        name=character.name,
        persona=character.persona,
        knowledge=character.knowledge,
        rules=[
            OfflineRule(
                when=rule.when,
                call=rule.call,
                args=rule.args,
                say=rule.say,
                after_result=rule.after_result,
            )
            for rule in character.offline.rule
        ],
    )


def offline_characters(project: Project | Mapping[str, Character]) -> dict[str, OfflineCharacter]:
    """Every character of a project (or of a character mapping), keyed by id."""
    characters = project.characters if isinstance(project, Project) else project
    return {cid: offline_character(c) for cid, c in characters.items()}
