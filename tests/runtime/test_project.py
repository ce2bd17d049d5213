"""load_project: npc.toml and characters/*.toml into typed models, cross-checked against the
capabilities; every problem a designer can make names file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from capabilities import Problem, ProjectError
from runtime.project import Character, OfflineRule, Project, ProjectConfig, load_project


def load_problems(root: Path) -> list[Problem]:
    with pytest.raises(ProjectError) as caught:
        load_project(root)
    return list(caught.value.problems)


def write(root: Path, relative: str, text: str) -> None:
    (root / relative).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def replace(root: Path, relative: str, old: str, new: str) -> None:
    path = root / relative
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur once in {relative}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def line_of(root: Path, relative: str, needle: str, occurrence: int = 0) -> int:
    lines = (root / relative).read_text(encoding="utf-8").splitlines()
    return [i + 1 for i, line in enumerate(lines) if needle in line][occurrence]


# -- the sample -------------------------------------------------------------------------------


def test_sample_loads_into_typed_models(sample: Path) -> None:
    project = load_project(sample)
    assert isinstance(project, Project)
    assert project.root == sample
    config = project.config
    assert isinstance(config, ProjectConfig)
    assert config.project.name == "village"
    assert config.capabilities.python == ["capabilities/social.py"]
    assert (config.model.base_url, config.model.model) == ("offline", "offline")
    assert config.model.api_key_env == "OPENAI_API_KEY"
    assert (config.model.max_concurrency, config.model.timeout_s) == (64, 60.0)
    assert (config.bridge.host, config.bridge.port) == ("127.0.0.1", 8765)
    assert config.http.port == 8080
    assert config.limits.steps_per_turn == 8
    assert set(project.characters) == {"guard", "merchant", "villager"}
    assert dict(project.character_files) == {
        "guard": "characters/guard.toml",
        "merchant": "characters/merchant.toml",
        "villager": "characters/villager.toml",
    }


def test_sample_guard(sample: Path) -> None:
    guard = load_project(sample).characters["guard"]
    assert isinstance(guard, Character)
    assert guard.name == "Brom the gate guard"
    assert guard.persona.startswith("A gruff but fair guard")
    assert any("password" in fact and "oak" in fact for fact in guard.knowledge)
    assert {"goToLocation", "openGate"} <= set(guard.capabilities)
    assert guard.triggers == ["heard"]
    assert (guard.model.temperature, guard.model.max_tokens) == (0.4, 200)
    first = guard.offline.rule[0]
    assert first == OfflineRule(
        when=["oak"],
        call="openGate",
        args={},
        say="Oak it is. Stand back.",
        after_result="The gate is open. Go on through.",
    )
    assert guard.offline.rule[1].call is None


def test_guard_tools_are_game_executed_calls(sample: Path) -> None:
    project = load_project(sample)
    tools = project.tools_for("guard")
    assert tools.names() == project.characters["guard"].capabilities
    for name in ("goToLocation", "openGate"):
        cap = tools.get(name)
        assert (cap.executor, cap.mode) == ("game", "call")


def test_defaults_without_npc_toml(village: Path) -> None:
    (village / "npc.toml").unlink()
    for name in ("recall", "remember", "say", "emote", "follow"):  # social.py is not loaded
        for path in (village / "characters").glob("*.toml"):
            text = path.read_text(encoding="utf-8").replace(f'"{name}", ', "")
            path.write_text(text.replace(f', "{name}"', ""), encoding="utf-8")
    replace(village, "characters/villager.toml", 'call = "follow"\n', "")
    replace(village, "characters/villager.toml", 'args = { target = "player" }\n', "")
    project = load_project(village)
    assert project.config == ProjectConfig()
    assert project.config.model.base_url == "offline"
    assert project.characters["villager"].triggers == ["heard", "saw"]


def test_character_defaults(village: Path) -> None:
    write(village, "characters/extra.toml", 'id = "extra"\nname = "E"\npersona = "Plain."\n')
    extra = load_project(village).characters["extra"]
    assert (extra.goals, extra.knowledge, extra.capabilities) == ([], [], [])
    assert extra.triggers == ["heard"]
    assert extra.offline.rule == []


def test_offline_rule_when_may_be_a_single_phrase(village: Path) -> None:
    replace(village, "characters/guard.toml", 'when = ["oak"]', 'when = "oak"')
    assert load_project(village).characters["guard"].offline.rule[0].when == ["oak"]


# -- npc.toml ---------------------------------------------------------------------------------


def test_npc_toml_unknown_keys(village: Path) -> None:
    replace(village, "npc.toml", "[bridge]\n", 'colour = "red"\n[bridge]\n')
    replace(village, "npc.toml", "max_retries = 2\n", "max_retries = 2\ntemprature = 0.5\n")
    assert load_problems(village) == [
        Problem(
            "npc.toml",
            line_of(village, "npc.toml", "temprature"),
            "model.temprature",
            "unknown key",
        ),
        Problem("npc.toml", line_of(village, "npc.toml", "colour"), "model.colour", "unknown key"),
    ]


def test_npc_toml_unknown_top_level_table(village: Path) -> None:
    replace(village, "npc.toml", "[limits]\n", "[limit]\n")
    assert load_problems(village) == [
        Problem("npc.toml", line_of(village, "npc.toml", "[limit]"), "limit", "unknown key")
    ]


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        (
            "port = 8765",
            'port = "high"',
            "bridge.port",
            "Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            "port = 8765",
            "port = 70000",
            "bridge.port",
            "Input should be less than or equal to 65535",
        ),
        (
            "max_retries = 2",
            "max_retries = [2]",
            "model.max_retries",
            "Input should be a valid integer",
        ),
        (
            "timeout_s = 60",
            "timeout_s = 0",
            "model.timeout_s",
            "Input should be greater than 0",
        ),
        (
            "steps_per_turn = 8",
            "steps_per_turn = 0",
            "limits.steps_per_turn",
            "Input should be greater than or equal to 1",
        ),
        (
            'python = ["capabilities/social.py"]',
            'python = "capabilities/social.py"',
            "capabilities.python",
            "Input should be a valid list",
        ),
    ],
)
def test_npc_toml_wrong_types_and_ranges(
    village: Path, old: str, new: str, field: str, message: str
) -> None:
    replace(village, "npc.toml", old, new)
    assert load_problems(village) == [
        Problem("npc.toml", line_of(village, "npc.toml", new), field, message)
    ]


def test_npc_toml_invalid_toml(village: Path) -> None:
    replace(village, "npc.toml", "port = 8765", "port = = 8765")
    (problem,) = load_problems(village)
    assert (problem.file, problem.line, problem.field) == (
        "npc.toml",
        line_of(village, "npc.toml", "port = = 8765"),
        None,
    )
    assert problem.message.startswith("invalid TOML: ")


def test_npc_toml_missing_python_file(village: Path) -> None:
    replace(village, "npc.toml", '"capabilities/social.py"', '"capabilities/sociable.py"')
    assert load_problems(village) == [
        Problem(
            "npc.toml",
            line_of(village, "npc.toml", "sociable"),
            "capabilities.python",
            "file not found: capabilities/sociable.py",
        )
    ]


# -- characters -------------------------------------------------------------------------------


def test_character_missing_required_fields(village: Path) -> None:
    write(village, "characters/extra.toml", 'goals = ["Be."]\n')
    assert load_problems(village) == [
        Problem("characters/extra.toml", None, "id", "required key is missing"),
        Problem("characters/extra.toml", None, "name", "required key is missing"),
        Problem("characters/extra.toml", None, "persona", "required key is missing"),
    ]


def test_character_invalid_values(village: Path) -> None:
    write(
        village,
        "characters/extra.toml",
        """
        id = "the extra"
        name = ""
        persona = "Plain."
        goals = "be"
        hobby = "fishing"

        [model]
        temperature = 3
        """,
    )
    assert load_problems(village) == [
        Problem(
            "characters/extra.toml",
            1,
            "id",
            "String should match pattern '^[A-Za-z0-9_-]{1,64}$'",
        ),
        Problem("characters/extra.toml", 2, "name", "String should have at least 1 character"),
        Problem("characters/extra.toml", 4, "goals", "Input should be a valid list"),
        Problem(
            "characters/extra.toml",
            8,
            "model.temperature",
            "Input should be less than or equal to 2",
        ),
        Problem("characters/extra.toml", 5, "hobby", "unknown key"),
    ]


def test_character_invalid_toml(village: Path) -> None:
    write(village, "characters/extra.toml", 'id = "extra"\nname = "E\n')
    (problem,) = load_problems(village)
    assert (problem.file, problem.line, problem.field) == ("characters/extra.toml", 2, None)
    assert problem.message.startswith("invalid TOML: ")


def test_duplicate_character_id(village: Path) -> None:
    write(
        village, "characters/zz_guard2.toml", '# another\nid = "guard"\nname = "G"\npersona = "P"\n'
    )
    assert load_problems(village) == [
        Problem(
            "characters/zz_guard2.toml",
            2,
            "id",
            "duplicate character id 'guard' (also in characters/guard.toml)",
        )
    ]


def test_character_naming_an_unknown_capability(village: Path) -> None:
    replace(village, "characters/guard.toml", '"openGate", "say"', '"openGates", "say"')
    problem, cascade = load_problems(village)
    assert problem.file == "characters/guard.toml"
    assert problem.line == line_of(village, "characters/guard.toml", "capabilities =")
    assert problem.field == "capabilities[1]"
    assert problem.message.startswith("unknown capability 'openGates'; known: goToLocation, ")
    assert "openGate" in problem.message.split("known: ")[1].split(", ")
    # The guard's offline rule still calls openGate, which the guard now lacks.
    assert cascade == Problem(
        "characters/guard.toml",
        line_of(village, "characters/guard.toml", "[[offline.rule]]"),
        "offline.rule[0].call",
        "'openGate' is not one of this character's capabilities",
    )


def test_character_listing_a_capability_twice(village: Path) -> None:
    replace(village, "characters/villager.toml", '"wait"]', '"wait", "say"]')
    assert load_problems(village) == [
        Problem(
            "characters/villager.toml",
            line_of(village, "characters/villager.toml", "capabilities ="),
            "capabilities[7]",
            "'say' is listed twice",
        )
    ]


def test_offline_rule_calling_a_capability_the_character_lacks(village: Path) -> None:
    # pickUp exists in the project but is not one of the guard's capabilities.
    replace(village, "characters/guard.toml", 'call = "openGate"', 'call = "pickUp"')
    assert load_problems(village) == [
        Problem(
            "characters/guard.toml",
            line_of(village, "characters/guard.toml", "[[offline.rule]]"),
            "offline.rule[0].call",
            "'pickUp' is not one of this character's capabilities",
        )
    ]


def test_offline_rule_with_invalid_args(village: Path) -> None:
    replace(
        village,
        "characters/merchant.toml",
        'args = { item = "apple", to = "player" }',
        'args = { item = "", to = "player", price = 2 }',
    )
    assert load_problems(village) == [
        Problem(
            "characters/merchant.toml",
            line_of(village, "characters/merchant.toml", "[[offline.rule]]"),
            "offline.rule[0].args",
            "invalid arguments for giveItem: "
            "Additional properties are not allowed ('price' was unexpected); "
            "item: '' should be non-empty",
        )
    ]


def test_offline_rule_problem_points_at_its_own_rule(village: Path) -> None:
    # The guard's second rule: the line is that rule's, not the first one's.
    replace(village, "characters/guard.toml", 'say = "Not without', 'sayy = "Not without')
    replace(
        village,
        "characters/guard.toml",
        'when = ["open the gate", "let me in", "let me through"]',
        "when = []",
    )
    assert load_problems(village) == [
        Problem(
            "characters/guard.toml",
            line_of(village, "characters/guard.toml", "when =", occurrence=1),
            "offline.rule[1].when",
            "List should have at least 1 item after validation, not 0",
        ),
        Problem(
            "characters/guard.toml",
            line_of(village, "characters/guard.toml", "sayy ="),
            "offline.rule[1].sayy",
            "unknown key",
        ),
    ]


def test_offline_rule_may_omit_optional_arguments(village: Path) -> None:
    # villager's follow rule sends only the target; distance is optional.
    project = load_project(village)
    assert project.characters["villager"].offline.rule[0].args == {"target": "player"}


def test_no_characters(village: Path) -> None:
    for path in (village / "characters").glob("*.toml"):
        path.unlink()
    assert load_problems(village) == [
        Problem("characters/", None, None, "the project declares no characters (characters/*.toml)")
    ]


def test_not_a_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert load_problems(missing) == [Problem(str(missing), None, None, "not a directory")]


def test_capability_and_character_problems_are_reported_together(village: Path) -> None:
    replace(
        village,
        "capabilities/world.toml",
        'mode = "call"\nexecutor = "game"\ntimeout_s = 10\nidempotent = true',
        'mode = "calls"\nexecutor = "game"\ntimeout_s = 10\nidempotent = true',
    )
    write(village, "characters/extra.toml", 'id = "extra"\n')
    problems = load_problems(village)
    assert [(p.file, p.field) for p in problems] == [
        ("capabilities/world.toml", "openGate.mode"),
        ("characters/extra.toml", "name"),
        ("characters/extra.toml", "persona"),
    ]


def test_missing_prompt_template_is_reported_with_its_line(village: Path) -> None:
    config = village / "npc.toml"
    config.write_text(config.read_text("utf-8") + '\n[prompt]\ntemplate = "nope.txt"\n', "utf-8")
    with pytest.raises(ProjectError) as caught:
        load_project(village)
    text = str(caught.value)
    assert "npc.toml:" in text
    assert "prompt.template: file not found: nope.txt" in text
