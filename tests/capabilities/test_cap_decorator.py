"""@capability: a typed function becomes a capability record (name, descriptions, schema,
execution settings), and every function that cannot become a tool is refused at import with
a message naming the function."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import pydantic
import pytest
from pydantic import BaseModel, Field

from capabilities import (
    Capability,
    CapabilityContext,
    DefinitionError,
    Registry,
    capability,
    capability_of,
)

THIS_FILE = str(Path(__file__).resolve())


def record(fn: Callable[..., Any]) -> Capability:
    cap = capability_of(fn)
    assert cap is not None, f"{fn.__name__} carries no capability record"
    return cap


def props(fn: Callable[..., Any]) -> dict[str, Any]:
    return dict(record(fn).parameters["properties"])


# -- name and description -------------------------------------------------------------------


def test_name_defaults_to_the_function_name() -> None:
    @capability
    def openDoor() -> None:
        """Open the door."""

    cap = record(openDoor)
    assert cap.name == "openDoor"
    assert cap.description == "Open the door."
    assert cap.parameters == {"type": "object", "properties": {}, "additionalProperties": False}


def test_name_and_description_can_be_overridden() -> None:
    @capability(name="open-door_2", description="Opens it.")
    def open_door() -> None:
        """Ignored docstring."""

    cap = record(open_door)
    assert cap.name == "open-door_2"
    assert cap.description == "Opens it."


def test_decorated_function_still_works_as_a_function() -> None:
    @capability(executor="runtime")
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    assert add(2, 3) == 5
    assert record(add).function is add


def test_docstring_gives_description_and_parameter_descriptions() -> None:
    @capability
    def walk(x: float, z: float, run: bool = False) -> None:
        """Walk to a point on the ground plane.

        The NPC takes the shortest path and answers when it arrives; this second
        paragraph is part of the description too.

        Args:
            x: East-west coordinate,
                in metres: negative is west.
            z (float): North-south coordinate.
            run: Whether to run.

        Returns:
            Nothing: x: this is not a parameter.
        """

    cap = record(walk)
    assert cap.description == (
        "Walk to a point on the ground plane. The NPC takes the shortest path and answers "
        "when it arrives; this second paragraph is part of the description too."
    )
    p = props(walk)
    assert p["x"]["description"] == "East-west coordinate, in metres: negative is west."
    assert p["z"]["description"] == "North-south coordinate."
    assert p["run"]["description"] == "Whether to run."


def test_no_docstring_gives_empty_description_and_no_parameter_descriptions() -> None:
    @capability
    def jump(height: float) -> None:
        pass

    assert record(jump).description == ""
    assert props(jump)["height"] == {"type": "number"}


def test_annotated_field_description_survives_without_docstring_entry() -> None:
    # Regression: an explicit description=None used to erase the Annotated one.
    @capability
    def throw(force: Annotated[float, Field(ge=0, description="How hard, 0..1")]) -> None:
        """Throw."""

    expected = {"type": "number", "minimum": 0, "description": "How hard, 0..1"}
    assert props(throw)["force"] == expected


# -- sync, async, context -------------------------------------------------------------------


def test_sync_and_async_runtime_functions() -> None:
    @capability(executor="runtime")
    def sync_one(n: int) -> int:
        """Double."""
        return n * 2

    @capability(executor="runtime")
    async def async_one(n: int) -> int:
        """Triple."""
        return n * 3

    assert asyncio.run(async_one(2)) == 6
    assert sync_one(2) == 4
    assert record(sync_one).function is sync_one
    assert record(async_one).function is async_one
    assert inspect.iscoroutinefunction(record(async_one).function)
    assert record(sync_one).parameters == record(async_one).parameters


def test_game_executor_keeps_no_function_body() -> None:
    @capability
    def wave() -> None:
        """Wave."""

    cap = record(wave)
    assert cap.executor == "game"
    assert cap.function is None


def test_context_by_annotation_is_not_a_parameter() -> None:
    @capability(executor="runtime")
    async def look(here: CapabilityContext, what: str) -> str:
        """Look."""
        return what

    cap = record(look)
    assert cap.takes_context
    assert list(cap.parameters["properties"]) == ["what"]
    assert cap.parameters["required"] == ["what"]


@pytest.mark.parametrize("param_name", ["ctx", "context"])
def test_context_by_name_is_not_a_parameter(param_name: str) -> None:
    namespace: dict[str, Any] = {}
    exec(  # a real function whose first parameter has the given name and no annotation
        f"def look({param_name}, what: str) -> str:\n    '''Look.'''\n    return what\n",
        namespace,
    )
    fn = capability(executor="runtime")(namespace["look"])
    cap = record(fn)
    assert cap.takes_context
    assert list(cap.parameters["properties"]) == ["what"]


def test_first_parameter_named_otherwise_is_an_argument() -> None:
    @capability
    def greet(who: str) -> None:
        """Greet."""

    cap = record(greet)
    assert not cap.takes_context
    assert list(cap.parameters["properties"]) == ["who"]


# -- execution settings -----------------------------------------------------------------------


def test_defaults_of_mode_executor_timeout_idempotent() -> None:
    @capability
    def nod() -> None:
        """Nod."""

    cap = record(nod)
    assert (cap.mode, cap.executor, cap.timeout_s, cap.idempotent) == ("call", "game", 30.0, False)


def test_mode_executor_timeout_idempotent_are_kept() -> None:
    @capability(mode="fire", executor="runtime", timeout_s=2, idempotent=True)
    def ping() -> None:
        """Ping."""

    cap = record(ping)
    assert (cap.mode, cap.executor, cap.idempotent) == ("fire", "runtime", True)
    assert cap.timeout_s == 2.0
    assert isinstance(cap.timeout_s, float)


# -- schema per type --------------------------------------------------------------------------


class Mood(Enum):
    HAPPY = "happy"
    GRUMPY = "grumpy"


class Item(BaseModel):
    """An item in a trade."""

    name: str
    count: int = 1


def test_int_and_float_with_bounds() -> None:
    @capability
    def tune(
        level: Annotated[int, Field(ge=1, le=10)],
        gain: Annotated[float, Field(gt=0, lt=1.5)],
        plain: int,
    ) -> None:
        """Tune."""

    p = props(tune)
    assert p["level"] == {"type": "integer", "minimum": 1, "maximum": 10}
    assert p["gain"] == {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1.5}
    assert p["plain"] == {"type": "integer"}
    assert record(tune).parameters["required"] == ["level", "gain", "plain"]


def test_str_and_bool() -> None:
    @capability
    def note(text: Annotated[str, Field(max_length=20)], loud: bool) -> None:
        """Note."""

    assert props(note) == {"text": {"type": "string", "maxLength": 20}, "loud": {"type": "boolean"}}


def test_literal() -> None:
    @capability
    def emote(kind: Literal["wave", "bow"]) -> None:
        """Emote."""

    assert props(emote)["kind"] == {"type": "string", "enum": ["wave", "bow"]}


def test_enum_becomes_a_definition_without_titles() -> None:
    @capability
    def feel(mood: Mood) -> None:
        """Feel."""

    params = record(feel).parameters
    assert params["properties"]["mood"] == {"$ref": "#/$defs/Mood"}
    assert params["$defs"]["Mood"] == {"type": "string", "enum": ["happy", "grumpy"]}


def test_nested_model_and_list_of_models() -> None:
    @capability
    def trade(offer: Item, wants: list[Item]) -> None:
        """Trade."""

    params = record(trade).parameters
    assert params["properties"]["offer"] == {"$ref": "#/$defs/Item"}
    assert params["properties"]["wants"] == {"type": "array", "items": {"$ref": "#/$defs/Item"}}
    item = params["$defs"]["Item"]
    assert item["properties"] == {
        "name": {"type": "string"},
        "count": {"type": "integer", "default": 1},
    }
    assert item["required"] == ["name"]
    assert "title" not in item


def test_list_of_scalars() -> None:
    @capability
    def visit(places: list[str]) -> None:
        """Visit."""

    assert props(visit)["places"] == {"type": "array", "items": {"type": "string"}}


def test_optional_and_defaults() -> None:
    @capability
    def follow(
        target: str,
        distance: float | None = None,
        old_style: Optional[int] = None,  # noqa: UP045 - the old spelling must work too
        speed: float = 1.5,
        mood: Literal["calm", "eager"] = "calm",
    ) -> None:
        """Follow."""

    cap = record(follow)
    p = props(follow)
    assert cap.parameters["required"] == ["target"]
    assert p["distance"] == {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None}
    assert p["old_style"] == {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}
    assert p["speed"] == {"type": "number", "default": 1.5}
    assert p["mood"] == {"type": "string", "enum": ["calm", "eager"], "default": "calm"}
    assert cap.optional_fields == {"distance", "old_style", "speed", "mood"}


def test_parameter_named_title_is_kept() -> None:
    @capability
    def book(title: str) -> None:
        """Book."""

    assert props(book) == {"title": {"type": "string"}}


def test_schema_of_every_type_is_strict_and_validates_through_a_registry() -> None:
    @capability
    def everything(
        n: Annotated[int, Field(ge=0)],
        x: float,
        s: str,
        b: bool,
        lit: Literal["a", "b"],
        mood: Mood,
        item: Item,
        items: list[Item],
        maybe: int | None = None,
    ) -> None:
        """All types."""

    cap = record(everything)
    assert cap.strict
    registry = Registry([cap])
    ok = registry.validate(
        "everything",
        '{"n": 1, "x": 2, "s": "t", "b": true, "lit": "a", "mood": "happy",'
        ' "item": {"name": "apple", "count": null}, "items": [], "maybe": null}',
    )
    assert ok.__class__.__name__ == "ArgumentsOk", ok
    assert ok.values["mood"] is Mood.HAPPY  # type: ignore[union-attr]
    assert ok.values["item"] == Item(name="apple", count=1)  # type: ignore[union-attr]


# -- DefinitionError ----------------------------------------------------------------------------


def definition_error(build: Callable[[], object]) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        build()
    return caught.value


@pytest.mark.parametrize("bad", ["has space", "", "x" * 65, "dots.not.allowed", "naïve"])
def test_bad_name(bad: str) -> None:
    def build() -> None:
        @capability(name=bad)
        def fine() -> None:
            """Fine."""

    err = definition_error(build)
    assert err.problem.field == "name"
    assert err.problem.message == (f"capability name {bad!r} must match ^[A-Za-z0-9_-]{{1,64}}$")
    assert err.problem.file == THIS_FILE
    assert isinstance(err.problem.line, int)
    assert str(err) == f"{THIS_FILE}:{err.problem.line}: name: {err.problem.message}"


def test_missing_type_hint() -> None:
    def build() -> None:
        @capability
        def hop(height) -> None:  # type: ignore[no-untyped-def]
            """Hop."""

    err = definition_error(build)
    assert err.problem.field == "hop"
    assert err.problem.message == "parameter 'height' needs a type hint"
    assert err.problem.file == THIS_FILE


@pytest.mark.parametrize("star", ["*args: int", "**kwargs: int"])
def test_star_args(star: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"def spread(a: int, {star}) -> None:\n    '''Spread.'''\n", namespace)
    err = definition_error(lambda: capability(namespace["spread"]))
    assert err.problem.field == "spread"
    assert err.problem.message == "*args/**kwargs cannot be tool parameters"


def test_context_with_executor_game() -> None:
    def build() -> None:
        @capability
        def peek(ctx: CapabilityContext, what: str) -> None:
            """Peek."""

    err = definition_error(build)
    assert err.problem.field == "peek"
    assert err.problem.message == "a context parameter only makes sense with executor='runtime'"


@pytest.mark.parametrize(
    "annotation",
    [
        pytest.param(Callable[[], int], id="callable"),
        pytest.param(type(pydantic), id="module-type"),
        pytest.param(asyncio.AbstractEventLoop, id="arbitrary-class"),
    ],
)
def test_unsupported_type(annotation: Any) -> None:
    def build() -> None:
        def carry(thing: Any) -> None:
            """Carry."""

        carry.__annotations__["thing"] = annotation
        capability(carry)

    err = definition_error(build)
    assert err.problem.field == "carry"
    assert err.problem.message.startswith("unsupported parameter type: ")


def test_unresolvable_forward_reference() -> None:
    def build() -> None:
        def bring(thing: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
            """Bring."""

        capability(bring)

    err = definition_error(build)
    assert err.problem.field == "bring"
    assert err.problem.message.startswith("cannot resolve type hints: ")
    assert "NoSuchType" in err.problem.message


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mode": "later"}, "mode must be one of ('call', 'fire'), got 'later'"),
        ({"executor": "cloud"}, "executor must be one of ('game', 'runtime'), got 'cloud'"),
        ({"timeout_s": 0}, "timeout_s must be positive"),
        ({"timeout_s": -1.5}, "timeout_s must be positive"),
    ],
)
def test_bad_settings(settings: dict[str, Any], message: str) -> None:
    def build() -> None:
        def act() -> None:
            """Act."""

        capability(**settings)(act)

    err = definition_error(build)
    assert err.problem.field == "act"
    assert err.problem.message == message


def test_capability_of_plain_objects_is_none() -> None:
    def plain() -> None:
        pass

    assert capability_of(plain) is None
    assert capability_of(42) is None
