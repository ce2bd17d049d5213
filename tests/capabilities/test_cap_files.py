"""Designer-file errors in capabilities: each problem names file, line and field, with a
message a designer can act on; every problem of a project is reported at once.

Each test copies samples/village into tmp_path and breaks one thing."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from capabilities import Problem, ProjectError, Registry

PYTHON = ["capabilities/social.py"]
KNOWN_KEYS = "['description', 'executor', 'idempotent', 'mode', 'name', 'parameters', 'timeout_s']"


def load_problems(root: Path, python: list[str] | None = None) -> list[Problem]:
    with pytest.raises(ProjectError) as caught:
        Registry.load(root, PYTHON if python is None else python)
    problems = list(caught.value.problems)
    assert str(caught.value) == "\n".join(str(p) for p in problems)
    return problems


def write(root: Path, relative: str, text: str) -> None:
    (root / relative).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def test_the_sample_loads(village: Path) -> None:
    registry = Registry.load(village, PYTHON)
    assert len(registry) == 10
    for name in ("goToLocation", "openGate", "say", "emote", "pickUp", "giveItem", "follow"):
        assert name in registry
    assert registry.get("goToLocation").executor == "game"
    assert registry.get("openGate").mode == "call"
    assert registry.get("recall").executor == "runtime"
    assert registry.get("say").mode == "fire"
    assert str(registry.get("openGate").source) == "capabilities/world.toml:3"


def test_invalid_toml(village: Path) -> None:
    write(
        village,
        "capabilities/zz.toml",
        """
        [[capability]]
        name = "hop"
        description = "Hop.
        """,
    )
    (problem,) = load_problems(village)
    assert (problem.file, problem.line, problem.field) == ("capabilities/zz.toml", 3, None)
    assert problem.message.startswith("invalid TOML: ")
    assert "line 3" in problem.message


def test_unknown_key_and_unknown_top_level_key(village: Path) -> None:
    write(
        village,
        "capabilities/zz.toml",
        """
        title = "my capabilities"

        [[capability]]
        name = "hop"
        description = "Hop."
        colour = "red"
        """,
    )
    assert load_problems(village) == [
        Problem(
            "capabilities/zz.toml",
            1,
            "title",
            "unknown top-level key (expected [[capability]] tables)",
        ),
        Problem(
            "capabilities/zz.toml", 6, "hop.colour", f"unknown key; expected one of {KNOWN_KEYS}"
        ),
    ]


def test_capability_must_be_an_array_of_tables(village: Path) -> None:
    write(village, "capabilities/zz.toml", 'capability = "hop"\n')
    assert load_problems(village) == [
        Problem(
            "capabilities/zz.toml",
            1,
            "capability",
            "must be an array of tables: write [[capability]]",
        )
    ]


def test_missing_name_and_invalid_names(village: Path) -> None:
    write(
        village,
        "capabilities/zz.toml",
        """
        [[capability]]
        description = "No name."

        [[capability]]
        name = "has space"
        description = "Bad name."

        [[capability]]
        name = 42
        description = "Not a string."

        [[capability]]
        name = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        description = "65 characters."
        """,
    )
    pattern = "^[A-Za-z0-9_-]{1,64}$"
    assert load_problems(village) == [
        Problem("capabilities/zz.toml", 1, "capability[0]", "missing required key 'name'"),
        Problem(
            "capabilities/zz.toml",
            5,
            "capability[1].name",
            f"invalid name 'has space': must match {pattern}",
        ),
        Problem(
            "capabilities/zz.toml",
            9,
            "capability[2].name",
            f"invalid name 42: must match {pattern}",
        ),
        Problem(
            "capabilities/zz.toml",
            13,
            "capability[3].name",
            f"invalid name {'x' * 65!r}: must match {pattern}",
        ),
    ]


def test_duplicate_names_across_files(village: Path) -> None:
    write(
        village,
        "capabilities/zz.toml",
        """
        # a second openGate
        [[capability]]
        name = "openGate"
        description = "Open it again."
        """,
    )
    assert load_problems(village) == [
        Problem(
            "capabilities/zz.toml",
            2,
            "openGate",
            "duplicate capability name (first declared at capabilities/world.toml:3)",
        )
    ]


def test_duplicate_names_in_one_file(village: Path) -> None:
    write(
        village,
        "capabilities/zz.toml",
        """
        [[capability]]
        name = "hop"
        description = "Hop."

        [[capability]]
        name = "hop"
        description = "Hop again."
        """,
    )
    assert load_problems(village) == [
        Problem(
            "capabilities/zz.toml",
            5,
            "hop",
            "duplicate capability name (first declared at capabilities/zz.toml:1)",
        )
    ]


@pytest.mark.parametrize("relative_root", [False, True])
def test_duplicate_names_toml_vs_python(
    village: Path, relative_root: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        village,
        "capabilities/zz.toml",
        """
        [[capability]]
        name = "say"
        description = "Say, declared twice."
        """,
    )
    root = village
    if relative_root:  # the message is the same however the directory was given
        monkeypatch.chdir(village.parent)
        root = Path(village.name)
    assert load_problems(root) == [
        Problem(
            "capabilities/social.py",
            15,
            "say",
            "duplicate capability name (first declared at capabilities/zz.toml:1)",
        )
    ]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ('parameters = "x: number"', "must be a table holding a JSON Schema of type object"),
        (
            '[capability.parameters]\ntype = "array"',
            'the parameters schema must have type = "object"',
        ),
        (
            '[capability.parameters]\ntype = "object"\nproperties = ["x"]',
            "properties must be a table",
        ),
        (
            '[capability.parameters]\ntype = "object"\nrequired = "x"\nproperties.x = {}',
            "required must be a list of property names",
        ),
        (
            '[capability.parameters]\ntype = "object"\nrequired = ["x", "y"]\n'
            'properties.x = { type = "number" }',
            "required names properties that are not declared: ['y']",
        ),
        (
            '[capability.parameters]\ntype = "object"\nproperties.x = { type = "numbr" }',
            "not a valid JSON Schema at properties.x.type: 'numbr' is not valid under any of "
            "the given schemas",
        ),
        (
            '[capability.parameters]\ntype = "object"\nproperties.x = { minimum = "low" }',
            "not a valid JSON Schema at properties.x.minimum: 'low' is not of type 'number'",
        ),
    ],
)
def test_bad_schema(village: Path, parameters: str, message: str) -> None:
    text = f'[[capability]]\nname = "hop"\ndescription = "Hop."\n{parameters}\n'
    write(village, "capabilities/zz.toml", text)
    assert load_problems(village) == [Problem("capabilities/zz.toml", 4, "hop.parameters", message)]


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ('mode = "later"', "mode", "unknown mode 'later': expected one of ['call', 'fire']"),
        (
            'executor = "cloud"',
            "executor",
            "unknown executor 'cloud': expected one of ['game', 'runtime']",
        ),
        (
            'executor = "runtime"',
            "executor",
            "executor 'runtime' needs Python code: declare it with @capability in a .py module",
        ),
        ("timeout_s = 0", "timeout_s", "must be a positive number of seconds, got 0"),
        ("timeout_s = -2.5", "timeout_s", "must be a positive number of seconds, got -2.5"),
        ('timeout_s = "30"', "timeout_s", "must be a positive number of seconds, got '30'"),
        ("timeout_s = true", "timeout_s", "must be a positive number of seconds, got True"),
        ('idempotent = "yes"', "idempotent", "must be true or false, got 'yes'"),
        ("description = 3", "description", "must be a string"),
        (
            'description = "  "',
            "description",
            "a description is required: it is how the model knows when to use this",
        ),
    ],
)
def test_bad_settings(village: Path, line: str, field: str, message: str) -> None:
    has_description = line.startswith("description")
    description = "" if has_description else 'description = "Hop."\n'
    write(village, "capabilities/zz.toml", f'[[capability]]\nname = "hop"\n{description}{line}\n')
    expected_line = 3 if has_description else 4
    assert load_problems(village) == [
        Problem("capabilities/zz.toml", expected_line, f"hop.{field}", message)
    ]


def test_missing_description_points_at_the_table(village: Path) -> None:
    write(village, "capabilities/zz.toml", '# hop\n[[capability]]\nname = "hop"\n')
    assert load_problems(village) == [
        Problem(
            "capabilities/zz.toml",
            2,
            "hop",
            "a description is required: it is how the model knows when to use this",
        )
    ]


def test_every_problem_is_reported_at_once(village: Path) -> None:
    write(
        village,
        "capabilities/zz.toml",
        """
        [[capability]]
        name = "hop"
        description = "Hop."
        mode = "later"
        timeout_s = 0

        [[capability]]
        name = "skip"
        description = "Skip."
        executor = "cloud"
        """,
    )
    write(village, "capabilities/movement.toml", 'oops = 1\n[[capability]]\nname = "x y"\n')
    problems = load_problems(village)
    assert [(p.file, p.line, p.field) for p in problems] == [
        ("capabilities/movement.toml", 1, "oops"),
        ("capabilities/movement.toml", 3, "capability[0].name"),
        ("capabilities/movement.toml", 2, "capability[0]"),  # and no description
        ("capabilities/zz.toml", 4, "hop.mode"),
        ("capabilities/zz.toml", 5, "hop.timeout_s"),
        ("capabilities/zz.toml", 10, "skip.executor"),
    ]


# -- Python modules ---------------------------------------------------------------------------


def test_python_module_import_error(village: Path) -> None:
    write(
        village,
        "capabilities/social.py",
        """
        from capabilities import capability

        SETTINGS = {"speed": 1}
        SPEED = SETTINGS["sped"]
        """,
    )
    assert load_problems(village) == [
        Problem("capabilities/social.py", 4, None, "error while importing: KeyError: 'sped'")
    ]


def test_python_module_syntax_error(village: Path) -> None:
    write(village, "capabilities/social.py", "import os\n\n\ndef broken(:\n    pass\n")
    (problem,) = load_problems(village)
    assert (problem.file, problem.line, problem.field) == ("capabilities/social.py", 4, None)
    assert problem.message.startswith("error while importing: SyntaxError: ")


def test_python_module_missing_import(village: Path) -> None:
    write(village, "capabilities/social.py", '"""Doc."""\nimport no_such_module_here\n')
    assert load_problems(village) == [
        Problem(
            "capabilities/social.py",
            2,
            None,
            "error while importing: ModuleNotFoundError: No module named 'no_such_module_here'",
        )
    ]


def test_definition_error_inside_a_module(village: Path) -> None:
    write(
        village,
        "capabilities/social.py",
        """
        from capabilities import CapabilityContext, capability


        @capability(mode="fire")
        def say(text: str) -> None:
            \"\"\"Say.\"\"\"


        @capability
        def peek(ctx: CapabilityContext, what: str) -> None:
            \"\"\"Peek (context with a game executor).\"\"\"
        """,
    )
    assert load_problems(village) == [
        Problem(
            "capabilities/social.py",
            9,
            "peek",
            "a context parameter only makes sense with executor='runtime'",
        )
    ]


def test_missing_python_file(village: Path) -> None:
    assert load_problems(village, [*PYTHON, "capabilities/nope.py"]) == [
        Problem("npc.toml", None, "capabilities.python", "file not found: capabilities/nope.py")
    ]


def test_only_the_modules_own_functions_are_collected(village: Path) -> None:
    write(
        village,
        "capabilities/extra.py",
        """
        from capabilities import capability

        from _npc_helpers_for_test import shared  # noqa: F401 - imported, not declared here


        @capability
        def hop() -> None:
            \"\"\"Hop.\"\"\"
        """,
    )
    helper = village / "_npc_helpers_for_test.py"
    helper.write_text(
        "from capabilities import capability\n\n\n@capability\ndef shared() -> None:\n"
        '    """Shared."""\n',
        encoding="utf-8",
    )
    import sys

    sys.path.insert(0, str(village))
    try:
        registry = Registry.load(village, [*PYTHON, "capabilities/extra.py"])
    finally:
        sys.path.remove(str(village))
        sys.modules.pop("_npc_helpers_for_test", None)
    assert "hop" in registry
    assert "shared" not in registry
    assert str(registry.get("hop").source).endswith("capabilities/extra.py:6")


def test_problem_str_formats() -> None:
    assert str(Problem("a.toml", 3, "x.mode", "bad")) == "a.toml:3: x.mode: bad"
    assert str(Problem("a.toml", None, "x", "bad")) == "a.toml: x: bad"
    assert str(Problem("a.toml", 7, None, "bad")) == "a.toml:7: bad"
    assert str(Problem("a.toml", None, None, "bad")) == "a.toml: bad"
