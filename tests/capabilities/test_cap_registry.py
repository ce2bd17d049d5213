"""Registry basics and the docstring parser: lookup, subsets, duplicates, and descriptions
taken from Google-style docstrings."""

from __future__ import annotations

from pathlib import Path

import pytest

from capabilities import Problem, ProjectError, Registry, capability, capability_of
from capabilities._docstrings import parse_docstring

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "village"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(SAMPLE, ["capabilities/social.py"])


def test_lookup(registry: Registry) -> None:
    assert "openGate" in registry
    assert "fly" not in registry
    assert 42 not in registry
    assert len(registry) == len(registry.names()) == 10
    assert [cap.name for cap in registry] == registry.names()
    assert registry.names()[:2] == ["goToLocation", "wait"]  # files in order, then modules
    assert repr(registry).startswith("Registry(['emote', ")


def test_get_unknown_lists_known_names(registry: Registry) -> None:
    with pytest.raises(KeyError, match=r"unknown capability 'fly'; known: goToLocation, wait"):
        registry.get("fly")


def test_subset_keeps_the_given_order_and_refuses_unknown_names(registry: Registry) -> None:
    subset = registry.subset(["say", "goToLocation"])
    assert subset.names() == ["say", "goToLocation"]
    assert subset.get("say") is registry.get("say")
    with pytest.raises(KeyError, match="unknown capability 'fly'"):
        registry.subset(["say", "fly"])


def test_constructing_with_duplicates_is_a_project_error() -> None:
    @capability
    def hop() -> None:
        """Hop."""

    cap = capability_of(hop)
    assert cap is not None
    with pytest.raises(ProjectError) as caught:
        Registry([cap, cap])
    (problem,) = caught.value.problems
    assert isinstance(problem, Problem)
    assert (problem.field, problem.line) == ("hop", cap.source.line if cap.source else None)
    assert problem.message.startswith("duplicate capability name (first declared at ")


def test_empty_registry() -> None:
    empty = Registry()
    assert len(empty) == 0
    assert empty.openai_tools() == []
    result = empty.validate("say", "{}")
    assert result.__class__.__name__ == "ArgumentsInvalid"
    assert "available tools: none" in result.message  # type: ignore[union-attr]


def test_project_without_capabilities_folder(tmp_path: Path) -> None:
    assert len(Registry.load(tmp_path)) == 0


# -- docstrings -------------------------------------------------------------------------------


def test_docstring_sections() -> None:
    doc = """Summary line.

    More text.

    Arguments:
        a (int): First,
            continued.
        *rest: Ignored star.
        b: Second: with a colon.

    Raises:
        ValueError: not a parameter.

    Example:
        c: not a parameter either.
    """
    description, params = parse_docstring(doc)
    assert description == "Summary line. More text."
    assert params == {
        "a": "First, continued.",
        "rest": "Ignored star.",
        "b": "Second: with a colon.",
    }


@pytest.mark.parametrize("doc", [None, "", "   "])
def test_empty_docstrings(doc: str | None) -> None:
    assert parse_docstring(doc) == ("", {})


def test_parameters_section_name_and_blank_lines() -> None:
    description, params = parse_docstring(
        "Do it.\n\nParameters:\n\n    x: The x.\n\n    y: The y.\n"
    )
    assert description == "Do it."
    assert params == {"x": "The x.", "y": "The y."}
