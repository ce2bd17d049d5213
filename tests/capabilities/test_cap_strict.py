"""Strict-mode export: the tool JSON the model sees, snapshot-tested for the sample, and the
conversion rules (closed objects, all properties required, optionals nullable, schemas strict
mode cannot express sent unchanged and non-strict)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from capabilities import ArgumentsInvalid, Registry, capability, capability_of
from capabilities._strict import to_strict
from capabilities.files import load_capability_file

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "village"
SAMPLE_PYTHON = ["capabilities/social.py"]


@pytest.fixture(scope="module")
def village_registry() -> Registry:
    return Registry.load(SAMPLE, SAMPLE_PYTHON)


# -- snapshots --------------------------------------------------------------------------------


def test_openai_tools_snapshot(village_registry: Registry, snapshot: Any) -> None:
    snapshot("village_openai", village_registry.openai_tools())


def test_json_schema_snapshot(village_registry: Registry, snapshot: Any) -> None:
    snapshot("village_jsonschema", village_registry.json_schemas())


def test_snapshot_detects_a_change(snapshot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPDATE_SNAPSHOTS", raising=False)
    registry = Registry.load(SAMPLE, SAMPLE_PYTHON)
    tools = copy.deepcopy(registry.openai_tools())
    tools[0]["function"]["description"] += " (changed)"
    with pytest.raises(pytest.fail.Exception, match=r"(?s)differs from snapshot.*\(changed\)"):
        snapshot("village_openai", tools)


def test_tool_shape_of_every_sample_capability(village_registry: Registry) -> None:
    tools = village_registry.openai_tools()
    assert [t["function"]["name"] for t in tools] == village_registry.names()
    for tool in tools:
        assert tool["type"] == "function"
        function = tool["function"]
        assert set(function) == {"name", "description", "parameters", "strict"}
        assert function["strict"] is True
        params = function["parameters"]
        assert params["type"] == "object"
        assert params["additionalProperties"] is False
        assert sorted(params["required"]) == sorted(params["properties"])
        assert function["description"].strip()
    assert json.loads(json.dumps(tools)) == tools


def test_tools_are_built_once(village_registry: Registry) -> None:
    assert village_registry.openai_tools() is village_registry.openai_tools()


def test_sample_optional_parameter_is_nullable_and_required(village_registry: Registry) -> None:
    follow = village_registry.get("follow")
    assert follow.parameters["required"] == ["target"]
    assert follow.tool_parameters["required"] == ["target", "distance"]
    assert follow.tool_parameters["properties"]["distance"] == {
        "anyOf": [{"type": "number"}, {"type": "null"}],
        "description": "How far behind to stay, in metres (default 2).",
    }


def test_subset_exports_only_the_characters_tools(village_registry: Registry) -> None:
    subset = village_registry.subset(["say", "openGate"])
    assert [t["function"]["name"] for t in subset.openai_tools()] == ["say", "openGate"]
    assert subset.openai_tools()[0] == village_registry.get("say").openai_tool()


# -- conversion rules -------------------------------------------------------------------------


def test_optional_scalars_enums_and_refs_become_nullable() -> None:
    schema = {
        "type": "object",
        "title": "args",
        "required": ["a"],
        "properties": {
            "a": {"type": "string", "default": "x", "title": "A"},
            "b": {"type": "integer", "minimum": 0},
            "c": {"type": "string", "enum": ["p", "q"]},
            "d": {"$ref": "#/$defs/Pos", "description": "where"},
            "e": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "f": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "g": {"type": ["string", "number"]},
            "h": {"enum": [1, 2]},
        },
        "$defs": {
            "Pos": {
                "type": "object",
                "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                "required": ["x"],
            }
        },
    }
    original = copy.deepcopy(schema)
    strict = to_strict(schema)
    assert schema == original, "to_strict must not modify its input"
    assert strict == {
        "type": "object",
        "required": ["a", "b", "c", "d", "e", "f", "g", "h"],
        "additionalProperties": False,
        "properties": {
            "a": {"type": "string"},
            "b": {"type": ["integer", "null"], "minimum": 0},
            "c": {"type": ["string", "null"], "enum": ["p", "q", None]},
            "d": {"anyOf": [{"$ref": "#/$defs/Pos"}, {"type": "null"}], "description": "where"},
            "e": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "f": {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
            "g": {"type": ["string", "number", "null"]},
            "h": {"enum": [1, 2, None]},
        },
        "$defs": {
            "Pos": {
                "type": "object",
                "properties": {"x": {"type": "number"}, "y": {"type": ["number", "null"]}},
                "required": ["x", "y"],
                "additionalProperties": False,
            }
        },
    }


def test_nested_objects_and_array_items_are_closed() -> None:
    schema = {
        "type": "object",
        "properties": {
            "route": {
                "type": "array",
                "items": {"type": "object", "properties": {"x": {"type": "number"}}},
            }
        },
        "required": ["route"],
    }
    strict = to_strict(schema)
    assert strict is not None
    item = strict["properties"]["route"]["items"]
    assert item == {
        "type": "object",
        "properties": {"x": {"type": ["number", "null"]}},
        "required": ["x"],
        "additionalProperties": False,
    }


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param(
            {"type": "object", "properties": {"v": {"oneOf": [{"type": "string"}]}}}, id="oneOf"
        ),
        pytest.param(
            {"type": "object", "properties": {}, "additionalProperties": True},
            id="additionalProperties-true",
        ),
        pytest.param(
            {"type": "object", "additionalProperties": {"type": "string"}},
            id="additionalProperties-schema",
        ),
        pytest.param(
            {"type": "object", "patternProperties": {"^x": {"type": "number"}}},
            id="patternProperties",
        ),
        pytest.param(
            {"type": "object", "properties": {"v": {"allOf": [{"type": "string"}]}}}, id="allOf"
        ),
        pytest.param(
            {"type": "object", "properties": {"v": {"not": {"type": "string"}}}}, id="not"
        ),
        pytest.param(
            {"type": "object", "properties": {"v": {"type": "array", "uniqueItems": True}}},
            id="uniqueItems",
        ),
        pytest.param(
            {"type": "object", "properties": {"v": {"type": "array", "prefixItems": []}}},
            id="prefixItems",
        ),
        pytest.param(
            {"anyOf": [{"type": "object"}, {"type": "object"}], "type": "object"},
            id="top-level-anyOf",
        ),
        pytest.param({"type": "array"}, id="not-an-object"),
        pytest.param(
            {
                "type": "object",
                "properties": {"v": {"type": "object", "additionalProperties": True}},
            },
            id="nested-open-object",
        ),
        pytest.param({"type": "object", "properties": {"v": True}}, id="boolean-optional-schema"),
    ],
)
def test_schemas_strict_mode_cannot_express(schema: dict[str, Any]) -> None:
    assert to_strict(schema) is None


NON_STRICT_TOML = """
[[capability]]
name = "setFlags"
description = "Set any number of named flags."
[capability.parameters]
type = "object"
additionalProperties = true
properties.flag = { oneOf = [{ type = "string" }, { type = "boolean" }] }
"""


def test_non_strict_file_capability_is_exported_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "flags.toml"
    path.write_text(NON_STRICT_TOML, encoding="utf-8")
    caps, problems = load_capability_file(path)
    assert problems == []
    (cap,) = caps
    assert not cap.strict
    assert cap.tool_parameters == cap.parameters
    assert cap.openai_tool() == {
        "type": "function",
        "function": {
            "name": "setFlags",
            "description": "Set any number of named flags.",
            "parameters": {
                "type": "object",
                "additionalProperties": True,
                "properties": {"flag": {"oneOf": [{"type": "string"}, {"type": "boolean"}]}},
            },
        },
    }
    # Optional fields of a non-strict schema are not made nullable: null is an error.
    registry = Registry([cap])
    assert registry.validate("setFlags", '{"flag": "on", "other": 1}').__class__.__name__ == (
        "ArgumentsOk"
    )
    bad = registry.validate("setFlags", '{"flag": null}')
    assert bad.__class__.__name__ == "ArgumentsInvalid"


def test_python_capability_with_open_mapping_is_non_strict() -> None:
    @capability
    def tag(labels: dict[str, int]) -> None:
        """Tag things."""

    cap = capability_of(tag)
    assert cap is not None
    assert not cap.strict
    assert cap.tool_parameters == cap.parameters
    assert cap.parameters["properties"]["labels"] == {
        "type": "object",
        "additionalProperties": {"type": "integer"},
    }
    assert "strict" not in cap.openai_tool()["function"]


def test_json_schemas_carry_metadata(village_registry: Registry) -> None:
    schemas = village_registry.json_schemas()
    recall = schemas["recall"]
    assert recall["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert recall["title"] == "recall"
    assert recall["x-npc"] == {
        "mode": "call",
        "executor": "runtime",
        "timeout_s": 5.0,
        "idempotent": False,
    }
    # The plain export is the designer's schema, not the strict form.
    assert schemas["follow"]["required"] == ["target"]


def test_string_length_bounds_move_into_the_description_but_are_still_checked(
    village_registry: Registry,
) -> None:
    """minLength/maxLength are outside strict mode's documented subset: the model reads them
    in the description, the validator still enforces them."""
    tool = village_registry.get("giveItem").openai_tool()["function"]
    item = tool["parameters"]["properties"]["item"]
    assert "minLength" not in item
    assert "maxLength" not in item
    assert item["description"] == "Name of the item to give (1 to 64 characters)"
    assert tool["strict"] is True
    too_long = json.dumps({"item": "x" * 65, "to": "player"})
    verdict = village_registry.validate("giveItem", too_long)
    assert isinstance(verdict, ArgumentsInvalid)
    assert "item" in verdict.message
    only_min = to_strict(
        {"type": "object", "properties": {"s": {"type": "string", "minLength": 2}}}
    )
    assert only_min is not None
    assert only_min["properties"]["s"] == {
        "type": ["string", "null"],
        "description": "At least 2 characters",
    }
