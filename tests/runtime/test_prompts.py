"""The system prompt (runtime.prompts): built from the character file, the NPC's state and
recent perceptions; overridable per project; perceptions rendered as the model sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.project import Character, Project
from runtime.prompts import DEFAULT_TEMPLATE, PromptBuilder, render_event
from tests.runtime.scripted import make_project


def character(**changes: object) -> Character:
    values: dict[str, object] = {
        "id": "guard",
        "name": "Brom",
        "persona": "A gruff guard; the toll is $5.",
        "goals": ["Guard the gate.", "Stay awake."],
        "knowledge": ["The password is oak."],
    }
    values.update(changes)
    return Character.model_validate(values)


def test_default_prompt_is_built_from_the_character() -> None:
    prompt = PromptBuilder(character()).render("g1", {}, [])
    assert prompt.startswith("You are Brom. A gruff guard; the toll is $5.")
    assert "- Guard the gate.\n- Stay awake." in prompt
    assert "- The password is oak." in prompt
    assert "Your current state: unknown" in prompt
    assert "What you noticed recently:\n- (nothing)" in prompt
    assert "$" not in prompt.replace("$5", "")  # every placeholder was filled


def test_empty_lists_render_as_nothing() -> None:
    prompt = PromptBuilder(character(goals=[], knowledge=[])).render("g1", {}, [])
    assert "Your goals:\n- (nothing)" in prompt
    assert "What you know:\n- (nothing)" in prompt


def test_state_and_perceptions_change_the_prompt() -> None:
    builder = PromptBuilder(character())
    first = builder.render("g1", {"position": [1, 2]}, [])
    assert 'Your current state: {"position": [1, 2]}' in first
    second = builder.render("g1", {"position": [3, 4], "holding": "spear"}, ["You see a fox."])
    assert 'Your current state: {"holding": "spear", "position": [3, 4]}' in second
    assert "- You see a fox." in second
    # Asking again with the same inputs gives the same text.
    assert builder.render("g1", {"position": [1, 2]}, []) == first


def test_npc_placeholder_is_per_npc_even_when_cached() -> None:
    # One builder serves every NPC of a character (the Runtime shares it).
    builder = PromptBuilder(character(), "I am $npc, called $name.")
    assert builder.render("north", {}, []) == "I am north, called Brom."
    assert builder.render("south", {}, []) == "I am south, called Brom."


def test_custom_template_keeps_unknown_placeholders_and_escapes() -> None:
    builder = PromptBuilder(character(), "$name costs $$3; $unknown stays; ${persona}")
    assert builder.render("g1", {}, []) == (
        "Brom costs $3; $unknown stays; A gruff guard; the toll is $5."
    )


def test_project_template_file_overrides_the_default(tmp_path: Path) -> None:
    root = tmp_path / "project"
    project = make_project(root)
    (root / "prompt.txt").write_text("You are $name ($npc). Known: $knowledge", encoding="utf-8")
    with (root / "npc.toml").open("a", encoding="utf-8") as file:
        file.write('\n[prompt]\ntemplate = "prompt.txt"\n')
    from runtime.project import load_project

    configured: Project = load_project(root)
    builder = PromptBuilder.for_project(configured, configured.characters["tester"])
    assert builder.render("t1", {}, []) == "You are Tess (t1). Known: - The password is oak."
    default = PromptBuilder.for_project(project, project.characters["tester"])
    assert default.render("t1", {}, []).startswith("You are Tess. A test character.")
    assert "$persona" in DEFAULT_TEMPLATE


@pytest.mark.parametrize(
    ("kind", "data", "line"),
    [
        ("heard", {"speaker": "ann", "text": "oak"}, 'ann says: "oak"'),
        ("heard", {"text": "psst"}, 'someone says: "psst"'),
        ("saw", {"what": "a wolf", "where": [1, 2]}, "You see a wolf at [1, 2]."),
        ("saw", {"what": "smoke"}, "You see smoke."),
        ("saw", {}, "You see something."),
        ("state", {"b": 1, "a": "é"}, 'Your state is now {"a": "é", "b": 1}.'),
        ("bell", {"rings": 3, "at": "noon"}, '[bell] {"at": "noon", "rings": 3}'),
    ],
)
def test_render_event(kind: str, data: dict[str, object], line: str) -> None:
    assert render_event(kind, data) == line
