"""Arguments drawn from JSON Schemas are valid: every sample capability over 1,000 seeded draws
(checked by jsonschema and by the project's registry), and a zoo of harder schemas."""

from __future__ import annotations

import json
import random
from typing import Any

import jsonschema
import pytest

from capabilities import ArgumentsOk
from runtime.offline import decide, generate_arguments, generate_value
from tests.runtime.offline._offline_support import village, village_characters

DRAWS = 1000


def test_every_sample_capability_over_1000_draws() -> None:
    project = village()
    characters = village_characters()
    for cap in project.registry:
        tool = project.registry.subset([cap.name]).openai_tools()[0]
        schema = tool["function"]["parameters"]
        validator = jsonschema.Draft202012Validator(schema)
        rng = random.Random(f"draws-{cap.name}")
        seen: set[str] = set()
        for draw in range(DRAWS):
            args = generate_arguments(schema, rng, words=characters["guard"].knowledge[0].split())
            errors = [e.message for e in validator.iter_errors(args)]
            assert not errors, (cap.name, draw, args, errors)
            result = project.registry.validate(cap.name, json.dumps(args))
            assert isinstance(result, ArgumentsOk), (cap.name, args, result)
            seen.add(json.dumps(args, sort_keys=True))
        if schema.get("properties"):
            assert len(seen) > 1, f"{cap.name}: draws never vary"


def test_policy_calls_cover_every_capability_with_valid_arguments() -> None:
    """Through the whole policy (not just the generator): each character's tools all get called."""
    project = village()
    characters = village_characters()
    for cid, character in characters.items():
        tools = project.tools_for(cid).openai_tools()
        called: set[str] = set()
        for i in range(DRAWS):
            rng = random.Random(f"{cid}-{i}")
            messages = [{"role": "user", "content": f"player says: something {i}"}]
            reply = decide(character, messages, tools, rng)
            for call in reply.tool_calls:
                called.add(call.name)
                result = project.registry.validate(call.name, call.arguments)
                assert isinstance(result, ArgumentsOk), (cid, call, result)
        assert called == set(project.characters[cid].capabilities), cid


ZOO: list[dict[str, Any]] = [
    {  # OpenAI strict mode: every property required, optionals nullable
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "count", "note"],
        "properties": {
            "name": {"type": "string", "minLength": 3, "maxLength": 5},
            "count": {"type": ["integer", "null"], "minimum": 1, "maximum": 3},
            "note": {"anyOf": [{"type": "string", "maxLength": 2}, {"type": "null"}]},
        },
    },
    {  # nested objects and arrays with bounds and uniqueness
        "type": "object",
        "required": ["path"],
        "properties": {
            "path": {
                "type": "array",
                "minItems": 2,
                "maxItems": 4,
                "items": {
                    "type": "object",
                    "required": ["x", "z"],
                    "additionalProperties": False,
                    "properties": {
                        "x": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                        "z": {"type": "integer", "multipleOf": 5, "minimum": -12, "maximum": 12},
                    },
                },
            },
            "tags": {
                "type": "array",
                "uniqueItems": True,
                "maxItems": 3,
                "items": {"enum": ["a", "b", "c"]},
            },
        },
    },
    {  # $defs / $ref as pydantic emits them, with a recursive model
        "type": "object",
        "required": ["root"],
        "$defs": {
            "Node": {
                "type": "object",
                "required": ["label"],
                "properties": {
                    "label": {"type": "string", "minLength": 1},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
            }
        },
        "properties": {"root": {"$ref": "#/$defs/Node"}, "flag": {"type": "boolean"}},
    },
    {  # oneOf with const branches, allOf merges, numbers with multipleOf 0.5
        "type": "object",
        "required": ["kind", "speed", "both"],
        "properties": {
            "kind": {"oneOf": [{"const": "walk"}, {"const": "run"}, {"type": "integer"}]},
            "speed": {"type": "number", "multipleOf": 0.5, "minimum": 0, "maximum": 3},
            "both": {
                "allOf": [
                    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "null"}}, "required": ["b"]},
                ]
            },
        },
    },
    {"type": "object", "properties": {}, "additionalProperties": False},
    {"type": "object"},
]


@pytest.mark.parametrize("index", range(len(ZOO)))
def test_schema_zoo(index: int) -> None:
    schema = ZOO[index]
    validator = jsonschema.Draft202012Validator(schema)
    rng = random.Random(index)
    for draw in range(DRAWS):
        value = generate_arguments(schema, rng)
        errors = [e.message for e in validator.iter_errors(value)]
        assert not errors, (draw, value, errors)


def test_scalar_values() -> None:
    rng = random.Random(0)
    for schema in (
        {"type": "integer", "minimum": 7, "maximum": 7},
        {"type": "number", "minimum": -0.5, "exclusiveMaximum": 0},
        {"type": "string", "minLength": 50},
        {"type": "string", "maxLength": 0},
        {"type": "null"},
        {"const": {"fixed": [1, 2]}},
        {"type": ["boolean", "string"]},
    ):
        validator = jsonschema.Draft202012Validator(schema)
        for _ in range(200):
            value = generate_value(schema, rng)
            assert validator.is_valid(value), (schema, value)


def test_hostile_schemas_give_no_arguments_instead_of_failing_or_spinning() -> None:
    """Tool schemas come from anyone's request. Found by fuzzing: oneOf retries recursing
    through `$ref: "#"` (exponential work without a budget), and `required` that is not a
    list inside allOf."""
    from runtime.offline.schema_args import generate_arguments

    recursive = {
        "type": "object",
        "oneOf": [{"type": "number", "$ref": "#/nope"}],
        "allOf": [{"type": "object"}, {"$ref": "#", "required": [{"c": 1}, -2.0]}],
    }
    odd_required = {"type": "object", "allOf": [{"required": ["a"]}, {"required": -1.5}]}
    for seed in range(20):
        assert isinstance(generate_arguments(recursive, random.Random(seed)), dict)
        assert isinstance(generate_arguments(odd_required, random.Random(seed)), dict)
