"""Argument validation on hostile input: whatever a model (or anything else) sends as a tool
call's arguments becomes ArgumentsOk or ArgumentsInvalid with field paths; nothing raises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from capabilities import (
    ArgumentProblem,
    ArgumentsInvalid,
    ArgumentsOk,
    Capability,
    Registry,
    capability,
    capability_of,
)
from capabilities._strict import to_strict
from capabilities.files import load_capability_file
from capabilities.validation import MAX_ARGUMENTS_BYTES

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "village"

ORDER_TOML = """
[[capability]]
name = "order"
description = "Order items (declared in a data file: checked with JSON Schema)."
[capability.parameters]
type = "object"
required = ["items"]
properties.note = { type = "string" }
properties.speed = { type = "number" }
[capability.parameters.properties.items]
type = "array"
maxItems = 5
[capability.parameters.properties.items.items]
type = "object"
required = ["name"]
properties.name = { type = "string", minLength = 1 }
properties.qty = { type = "integer", minimum = 1 }
"""


class Line(BaseModel):
    name: str
    qty: int = 1


@capability
def trade(items: list[Line], mood: Literal["calm", "eager"] = "calm") -> None:
    """Trade items (declared in Python: checked with the pydantic model)."""


def build_registry(tmp: Path) -> Registry:
    path = tmp / "order.toml"
    path.write_text(ORDER_TOML, encoding="utf-8")
    caps, problems = load_capability_file(path)
    assert problems == []
    sample = Registry.load(SAMPLE, ["capabilities/social.py"])
    trade_cap = capability_of(trade)
    assert trade_cap is not None
    return Registry([*sample, *caps, trade_cap])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return build_registry(tmp_path_factory.mktemp("caps"))


def ok(result: ArgumentsOk | ArgumentsInvalid) -> ArgumentsOk:
    assert isinstance(result, ArgumentsOk), result
    return result


def invalid(result: ArgumentsOk | ArgumentsInvalid) -> ArgumentsInvalid:
    assert isinstance(result, ArgumentsInvalid), result
    assert result.problems
    return result


def problems(result: ArgumentsOk | ArgumentsInvalid) -> list[tuple[str, str]]:
    return [(p.path, p.message) for p in invalid(result).problems]


# -- hostile input, property-based --------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(["x", "z", "item", "to", "text", "kind", "items", "name", "qty", "q"])
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)
NAMES = st.sampled_from(
    ["goToLocation", "openGate", "emote", "follow", "recall", "order", "trade", "giveItem"]
) | st.text(max_size=70)
HOSTILE = (
    st.text(max_size=300)
    | st.binary(max_size=300)
    | JSON_VALUES.map(json.dumps)
    | JSON_VALUES.map(lambda v: json.dumps(v).encode("utf-16"))
    | st.sampled_from(["NaN", "Infinity", "-Infinity", '{"x": NaN}', '{"x": 1e999}', "{", "[]"])
)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_result(name: str, result: ArgumentsOk | ArgumentsInvalid) -> None:
    assert isinstance(result, ArgumentsOk | ArgumentsInvalid)
    if isinstance(result, ArgumentsInvalid):
        assert result.problems
        assert all(isinstance(p, ArgumentProblem) for p in result.problems)
        message = result.message
        assert message.startswith("invalid arguments for ")
        assert len(message) < 2000, "the error goes back to the model: it must stay short"
    else:
        assert result.name == name
        json.dumps(result.args, allow_nan=False)  # JSON-ready, finite


@FAST
@given(name=NAMES, arguments=HOSTILE)
def test_anything_becomes_ok_or_invalid(registry: Registry, name: str, arguments: Any) -> None:
    check_result(name, registry.validate(name, arguments))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=JSON_VALUES)
def test_any_json_value_for_every_capability(registry: Registry, value: Any) -> None:
    text = json.dumps(value)
    for name in registry.names():
        result = registry.validate(name, text)
        check_result(name, result)
        if not isinstance(value, dict):
            assert problems(result)[0][1].startswith("arguments must be a JSON object, got ")


@FAST
@given(
    x=st.floats(-1000, 1000, allow_nan=False),
    z=st.floats(-1000, 1000, allow_nan=False) | st.integers(-1000, 1000),
)
def test_valid_file_arguments_round_trip(registry: Registry, x: float, z: float) -> None:
    result = ok(registry.validate("goToLocation", json.dumps({"x": x, "z": z})))
    assert result.args == {"x": x, "z": z}
    assert result.values == result.args


@FAST
@given(
    text=st.text(max_size=200),
    kind=st.sampled_from(["wave", "bow", "nod", "laugh", "shrug", "angry"]),
    lines=st.lists(
        st.fixed_dictionaries({"name": st.text(max_size=10)}, optional={"qty": st.integers()}),
        max_size=4,
    ),
)
def test_valid_python_arguments_round_trip(
    registry: Registry, text: str, kind: str, lines: list[dict[str, Any]]
) -> None:
    assert ok(registry.validate("say", json.dumps({"text": text}))).args == {"text": text}
    assert ok(registry.validate("emote", json.dumps({"kind": kind}))).args == {"kind": kind}
    result = ok(registry.validate("trade", json.dumps({"items": lines})))
    assert result.args == {"items": lines}
    assert result.values["items"] == [Line(**line) for line in lines]
    assert result.values["mood"] == "calm"


# -- each kind of problem -----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["{", '{"x": 1,}', "{'x': 1}", '{"x": 1} trailing', "tru"])
def test_invalid_json(registry: Registry, text: str) -> None:
    ((path, message),) = problems(registry.validate("goToLocation", text))
    assert path == ""
    assert message.startswith("arguments are not valid JSON (")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("[1, 2]", "an array"),
        ('"x"', "a string"),
        ("3", "a number"),
        ("2.5", "a number"),
        ("true", "a boolean"),
        ("null", "null"),
    ],
)
def test_non_object(registry: Registry, text: str, kind: str) -> None:
    assert problems(registry.validate("goToLocation", text)) == [
        ("", f"arguments must be a JSON object, got {kind}")
    ]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("name", ["goToLocation", "follow"])
def test_nan_and_infinity_constants(registry: Registry, name: str, constant: str) -> None:
    first = "x" if name == "goToLocation" else "distance"
    text = f'{{"{first}": {constant}, "z": 1, "target": "p"}}'
    ((path, message),) = problems(registry.validate(name, text))
    assert path == ""
    assert message == f"arguments are not valid JSON ({constant} is not a valid JSON number)"


@pytest.mark.parametrize("name", ["order", "follow"])
@pytest.mark.parametrize("number", ["1e400", "-1e400"])
def test_numbers_overflowing_to_infinity(registry: Registry, name: str, number: str) -> None:
    # No bounds on order.speed / follow.distance: the overflow itself must be refused.
    field = "speed" if name == "order" else "distance"
    extra = '"items": []' if name == "order" else '"target": "p"'
    ((path, message),) = problems(registry.validate(name, f'{{"{field}": {number}, {extra}}}'))
    assert path == ""
    assert message.startswith("arguments are not valid JSON (")
    assert "finite" in message


def test_extra_fields_file_capability(registry: Registry) -> None:
    assert problems(registry.validate("goToLocation", '{"x": 1, "z": 2, "y": 3}')) == [
        ("", "Additional properties are not allowed ('y' was unexpected)")
    ]


def test_extra_fields_python_capability(registry: Registry) -> None:
    assert problems(registry.validate("say", '{"text": "hi", "volume": 11}')) == [
        ("volume", "unexpected field")
    ]


def test_out_of_range_numbers(registry: Registry) -> None:
    assert problems(registry.validate("goToLocation", '{"x": 1000.5, "z": -2000}')) == [
        ("x", "1000.5 is greater than the maximum of 1000"),
        ("z", "-2000 is less than the minimum of -1000"),
    ]
    assert problems(registry.validate("wait", '{"seconds": -1}')) == [
        ("seconds", "-1 is less than the minimum of 0")
    ]


def test_wrong_types_are_not_coerced(registry: Registry) -> None:
    assert problems(registry.validate("goToLocation", '{"x": "5", "z": true}')) == [
        ("x", "'5' is not of type 'number'"),
        ("z", "True is not of type 'number'"),
    ]
    assert problems(registry.validate("say", '{"text": 5}')) == [
        ("text", "Input should be a valid string")
    ]
    assert problems(registry.validate("follow", '{"target": "p", "distance": "2"}')) == [
        ("distance", "Input should be a valid number")
    ]
    assert problems(registry.validate("emote", '{"kind": "dance"}')) == [
        ("kind", "Input should be 'wave', 'bow', 'nod', 'laugh', 'shrug' or 'angry'")
    ]


def test_missing_required_fields(registry: Registry) -> None:
    assert problems(registry.validate("goToLocation", '{"x": 1}')) == [
        ("", "'z' is a required property")
    ]
    assert problems(registry.validate("say", "{}")) == [("text", "required field is missing")]


def test_nested_paths_file_capability(registry: Registry) -> None:
    text = '{"items": [{"name": "apple"}, {"name": 5, "qty": 0}, {}]}'
    assert problems(registry.validate("order", text)) == [
        ("items[1].name", "5 is not of type 'string'"),
        ("items[1].qty", "0 is less than the minimum of 1"),
        ("items[2]", "'name' is a required property"),
    ]


def test_nested_paths_python_capability(registry: Registry) -> None:
    text = '{"items": [{"name": "apple"}, {"name": 5, "qty": "2"}, {}]}'
    assert problems(registry.validate("trade", text)) == [
        ("items[1].name", "Input should be a valid string"),
        ("items[1].qty", "Input should be a valid integer"),
        ("items[2].name", "required field is missing"),
    ]


@pytest.mark.parametrize("as_bytes", [False, True])
def test_huge_input(registry: Registry, as_bytes: bool) -> None:
    text = json.dumps({"text": "a" * (MAX_ARGUMENTS_BYTES + 1)})
    raw: str | bytes = text.encode() if as_bytes else text
    ((path, message),) = problems(registry.validate("say", raw))
    assert path == ""
    assert message == (f"arguments are too long ({len(text)} bytes, max {MAX_ARGUMENTS_BYTES})")


def test_just_under_the_size_limit_is_fine(registry: Registry) -> None:
    text = json.dumps({"text": "a" * (MAX_ARGUMENTS_BYTES - 20)})
    assert len(text) <= MAX_ARGUMENTS_BYTES
    assert ok(registry.validate("say", text)).args["text"].startswith("aaa")


@pytest.mark.parametrize("name", ["say", "goToLocation", "order", "trade"])
def test_deeply_nested_json(registry: Registry, name: str) -> None:
    depth = MAX_ARGUMENTS_BYTES // 2 - 20
    text = '{"items": ' + "[" * depth + "]" * depth + "}"
    assert len(text) <= MAX_ARGUMENTS_BYTES
    ((path, message),) = problems(registry.validate(name, text))
    assert path == ""
    assert message == "arguments are nested too deeply"


@pytest.mark.parametrize("name", ["say", "goToLocation", "order", "trade"])
def test_moderately_nested_json_is_a_normal_problem(registry: Registry, name: str) -> None:
    text = '{"items": ' + "[" * 600 + "]" * 600 + "}"
    check_result(name, invalid(registry.validate(name, text)))


def test_invalid_utf8(registry: Registry) -> None:
    assert problems(registry.validate("say", b'{"text": "\xff"}')) == [
        ("", "arguments are not valid UTF-8")
    ]


def test_unknown_tool_lists_available_names(registry: Registry) -> None:
    result = invalid(registry.validate("fly", '{"x": 1}'))
    assert result.name == "fly"
    ((path, message),) = problems(result)
    assert path == ""
    assert message == f"unknown tool 'fly'; available tools: {', '.join(registry.names())}"
    assert "goToLocation" in message
    assert "openGate" in message


def test_unknown_tool_with_a_huge_or_odd_name(registry: Registry) -> None:
    result = invalid(registry.validate("x" * 5000, "{}"))
    assert len(result.message) < 2000
    weird: Any = 42
    assert isinstance(registry.validate(weird, "{}"), ArgumentsInvalid)


@pytest.mark.parametrize("empty", [None, "", "  ", b"", "\n"])
def test_empty_arguments_mean_no_arguments(registry: Registry, empty: str | bytes | None) -> None:
    assert ok(registry.validate("openGate", empty)).args == {}
    assert problems(registry.validate("goToLocation", empty)) == [
        ("", "'x' is a required property"),
        ("", "'z' is a required property"),
    ]


# -- strict mode nulls --------------------------------------------------------------------------


def test_strict_null_for_an_optional_field_is_dropped(registry: Registry) -> None:
    result = ok(registry.validate("follow", '{"target": "p", "distance": null}'))
    assert result.args == {"target": "p"}
    assert result.values == {"target": "p", "distance": None}
    result = ok(registry.validate("follow", '{"target": "p", "distance": 3}'))
    assert result.args == {"target": "p", "distance": 3.0}


def test_strict_null_for_a_required_field_is_refused(registry: Registry) -> None:
    assert problems(registry.validate("follow", '{"target": null}')) == [
        ("target", "Input should be a valid string")
    ]
    assert problems(registry.validate("goToLocation", '{"x": null, "z": 1}')) == [
        ("x", "None is not of type 'number'")
    ]


def test_strict_nulls_in_nested_objects_are_dropped(registry: Registry) -> None:
    # Strict mode makes every nested property required-but-nullable; the model sends null.
    python = ok(registry.validate("trade", '{"items": [{"name": "a", "qty": null}], "mood": null}'))
    assert python.args == {"items": [{"name": "a"}]}  # what was sent, minus the nulls
    assert python.values["items"] == [Line(name="a", qty=1)]
    assert python.values["mood"] == "calm"
    data_file = ok(
        registry.validate(
            "order", '{"items": [{"name": "a", "qty": null}], "note": null, "speed": null}'
        )
    )
    assert data_file.args == {"items": [{"name": "a"}]}


def test_strict_tool_schema_accepts_what_validation_accepts(registry: Registry) -> None:
    # The tool schema tells the model it may send null for nested optionals: check it does.
    order = registry.get("order")
    assert order.strict
    item = order.tool_parameters["properties"]["items"]["items"]
    assert item["required"] == ["name", "qty"]
    assert item["properties"]["qty"]["type"] == ["integer", "null"]


def test_arguments_invalid_message_is_bounded() -> None:
    result = ArgumentsInvalid("t", tuple(ArgumentProblem(f"f{i}", "bad " * 10) for i in range(20)))
    assert result.message.endswith("; and 12 more")
    assert result.message.count("f1") == 1 + 0  # f1 only; f10.. are cut


def test_omitted_optional_fields_of_a_strict_file_capability(registry: Registry) -> None:
    # Strict mode obliges OpenAI to send every field; other providers may omit optionals.
    assert ok(registry.validate("order", '{"items": [{"name": "a"}]}')).args == {
        "items": [{"name": "a"}]
    }
    assert problems(registry.validate("order", '{"items": [{"name": "a", "colour": 1}]}')) == [
        ("items[0]", "Additional properties are not allowed ('colour' was unexpected)")
    ]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"text": "hi"}, None),
        ([1], "arguments must be a JSON object, got an array"),
        (7, "arguments must be a JSON object, got a number"),
        ({"text": float("nan")}, "arguments must be JSON text, got dict"),
        (object(), "arguments must be JSON text, got object"),
        (bytearray(b"{}"), "arguments must be JSON text, got bytearray"),
    ],
)
def test_already_decoded_or_odd_arguments(
    registry: Registry, given: Any, expected: str | None
) -> None:
    result = registry.validate("say", given)
    if expected is None:
        assert ok(result).args == {"text": "hi"}
    else:
        assert problems(result) == [("", expected)]


def test_hand_built_capability_without_checker() -> None:
    schema = {
        "type": "object",
        "required": ["a"],
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
    }
    strict = to_strict(schema)
    assert strict is not None
    cap = Capability(
        name="hand",
        description="d",
        parameters=schema,
        tool_parameters=strict,
        strict=True,
        optional_fields=frozenset({"b"}),
    )
    assert ok(cap.validate('{"a": 1, "b": null}')).args == {"a": 1}
    assert ok(cap.validate('{"a": 1}')).args == {"a": 1}
    assert problems(cap.validate('{"a": 1, "c": 2}')) == [
        ("", "Additional properties are not allowed ('c' was unexpected)")
    ]
