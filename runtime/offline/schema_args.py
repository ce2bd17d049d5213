"""Arguments drawn at random from a tool's JSON Schema, valid by construction.

The offline model calls capabilities with these so that every capability of a project is
exercised in simulations with plausible, schema-valid input. It covers what capability schemas
use in practice (types and type lists, enum/const, numeric bounds incl. exclusive ones and
multipleOf, string lengths, required vs optional, strict-mode nullable optionals,
anyOf/oneOf/allOf, local ``$ref``, nested objects and arrays with item bounds and uniqueness);
``pattern`` and ``format`` are not synthesised (a plain word is produced). Optional properties are
included half of the time, and never any property the schema does not declare, so
``additionalProperties: false`` always holds.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["generate_arguments", "generate_value"]

_WORDS = (
    "player",
    "apple",
    "oak",
    "gate",
    "market",
    "well",
    "bread",
    "lantern",
    "north",
    "friend",
)
_TEXT_NAMES = frozenset({"text", "message", "line", "utterance", "speech", "content", "fact"})
_MAX_DEPTH = 6
_HARD_DEPTH = 4 * _MAX_DEPTH
_BUDGET = 5_000
log = logging.getLogger("runtime.offline")
_DEFAULT_SPAN = 100.0


def generate_arguments(
    schema: Mapping[str, Any],
    rng: random.Random,
    *,
    words: Sequence[str] = (),
    line: str | None = None,
) -> dict[str, Any]:
    """Arguments for a tool whose ``parameters`` is ``schema`` (an object schema).

    ``words`` biases free strings towards the character's vocabulary; ``line`` is used for
    properties that name spoken text (``text``, ``message``...), so `say` says something
    in character instead of a random word.
    """
    gen = _Generator(schema, rng, tuple(words) or _WORDS, line)
    try:
        value = gen.value(schema, 0, None)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError, RecursionError):
        # A request's tool schema is anyone's input; one we cannot read gets no arguments
        # (the caller's validator then says what is missing) rather than a failed request.
        log.debug("unreadable tool schema; generating no arguments", exc_info=True)
        return {}
    return value if isinstance(value, dict) else {}


def generate_value(schema: Mapping[str, Any], rng: random.Random) -> Any:
    """Any value valid for ``schema`` (used by tests and by the argument generator)."""
    return _Generator(schema, rng, _WORDS, None).value(schema, 0, None)


class _Generator:
    __slots__ = ("budget", "line", "rng", "root", "words")

    def __init__(
        self,
        root: Mapping[str, Any],
        rng: random.Random,
        words: tuple[str, ...],
        line: str | None,
    ) -> None:
        self.root = root
        self.rng = rng
        self.words = words
        self.line = line
        # Every value drawn costs one; a schema whose oneOf retries recurse through $ref
        # would otherwise take exponential time (8 retries per level): one request must not
        # hold the model up, so past the budget the rest of the value is left empty.
        self.budget = _BUDGET

    # -- dispatch ---------------------------------------------------------------------------

    def value(self, schema: Any, depth: int, name: str | None) -> Any:
        self.budget -= 1
        if depth > _HARD_DEPTH or self.budget < 0:
            # A schema that refers to itself through anyOf/allOf/$ref (``$ref: "#"``) never
            # bottoms out: give up on it rather than on the request.
            return None
        if not isinstance(schema, Mapping):
            # `true` / `{}`-like schemas accept anything; a word is the most useful anything.
            return self.rng.choice(self.words)
        schema = self._resolve(schema, depth)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return self.rng.choice(enum)
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                return self._branch(schema, key, branches, depth, name)
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and all_of:
            return self.value(self._merge(schema, all_of, depth), depth + 1, name)
        kind = self._pick_type(schema, depth)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth, name)
        if kind == "string":
            return self._string(schema, name)
        if kind == "integer":
            return self._integer(schema)
        if kind == "number":
            return self._number(schema)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self.rng.choice(self.words)

    def _resolve(self, schema: Mapping[str, Any], depth: int) -> Mapping[str, Any]:
        seen = 0
        while isinstance(schema.get("$ref"), str) and seen < 16:
            target = self._lookup(schema["$ref"])
            if target is None:
                break
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **extra}
            seen += 1
        return schema

    def _lookup(self, ref: str) -> Mapping[str, Any] | None:
        if not ref.startswith("#"):
            return None
        node: Any = self.root
        for part in ref[1:].split("/"):
            if not part:
                continue
            key = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            else:
                return None
        return node if isinstance(node, Mapping) else None

    def _branch(
        self,
        schema: Mapping[str, Any],
        key: str,
        branches: list[Any],
        depth: int,
        name: str | None,
    ) -> Any:
        base = {k: v for k, v in schema.items() if k not in (key, "default")}
        if depth >= _MAX_DEPTH:
            # Prefer a branch that ends the recursion.
            for branch in branches:
                if isinstance(branch, Mapping) and branch.get("type") == "null":
                    return None
        chosen = self.rng.choice(branches)
        merged = {**base, **chosen} if isinstance(chosen, Mapping) else chosen
        if key == "oneOf":
            # Values valid for two branches would break oneOf; draws are retried a few times,
            # and scalar branches (the common case: a type per branch) never overlap anyway.
            for _ in range(8):
                candidate = self.value(merged, depth + 1, name)
                if _count_valid(candidate, branches, self) == 1:
                    return candidate
        return self.value(merged, depth + 1, name)

    def _merge(self, schema: Mapping[str, Any], parts: list[Any], depth: int) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in parts:
            if not isinstance(part, Mapping):
                continue
            for k, v in self._resolve(part, depth).items():
                if k == "properties" and isinstance(v, Mapping):
                    mine = merged.get("properties")
                    merged["properties"] = {**(mine if isinstance(mine, Mapping) else {}), **v}
                elif k == "required" and isinstance(v, list):
                    mine = merged.get("required")
                    merged["required"] = [*(mine if isinstance(mine, list) else []), *v]
                else:
                    merged.setdefault(k, v)
        return merged

    def _pick_type(self, schema: Mapping[str, Any], depth: int) -> str | None:
        kind = schema.get("type")
        if isinstance(kind, list):
            options = [k for k in kind if isinstance(k, str)]
            if not options:
                return None
            if depth >= _MAX_DEPTH and "null" in options:
                return "null"
            # Strict-mode optionals are `["T", "null"]`: null a quarter of the time keeps
            # the model's calls mostly meaningful while still exercising the null path.
            if "null" in options and len(options) > 1:
                if self.rng.random() < 0.25:
                    return "null"
                options = [k for k in options if k != "null"]
            return self.rng.choice(options)
        if isinstance(kind, str):
            return kind
        if "properties" in schema:
            return "object"
        if "items" in schema:
            return "array"
        return None

    # -- composite types ----------------------------------------------------------------------

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        props = schema.get("properties")
        props = props if isinstance(props, Mapping) else {}
        required = schema.get("required")
        names = required if isinstance(required, list) else []
        required_set = {name for name in names if isinstance(name, str)}
        out: dict[str, Any] = {}
        for prop, sub in props.items():
            if prop in required_set or (depth < _MAX_DEPTH - 1 and self.rng.random() < 0.5):
                out[prop] = self.value(sub, depth + 1, prop)
        # A required name without a declared schema still has to be present.
        for prop in required_set - out.keys():
            extra = schema.get("additionalProperties")
            out[prop] = self.value(extra if isinstance(extra, Mapping) else {}, depth + 1, prop)
        return out

    def _array(self, schema: Mapping[str, Any], depth: int, name: str | None) -> list[Any]:
        lo = _int(schema.get("minItems"), 0)
        hi = _int(schema.get("maxItems"), lo + 3)
        hi = max(lo, hi)
        if depth >= _MAX_DEPTH:
            hi = lo
        count = self.rng.randint(lo, min(hi, lo + 4))
        prefix = schema.get("prefixItems")
        items_schema = schema.get("items", {})
        out: list[Any] = []
        unique = bool(schema.get("uniqueItems"))
        attempts = 0
        while len(out) < count and attempts < count * 8 + 8:
            attempts += 1
            index = len(out)
            if isinstance(prefix, list) and index < len(prefix):
                sub = prefix[index]
            else:
                sub = items_schema
            item = self.value(sub, depth + 1, name)
            if unique and any(_same_json(item, seen) for seen in out):
                continue
            out.append(item)
        return out

    # -- scalars ------------------------------------------------------------------------------

    def _string(self, schema: Mapping[str, Any], name: str | None) -> str:
        lo = _int(schema.get("minLength"), 0)
        hi = _int(schema.get("maxLength"), max(lo, 40))
        hi = max(lo, hi)
        if name is not None and name.lower() in _TEXT_NAMES and self.line:
            text = self.line
        else:
            text = self.rng.choice(self.words)
        while len(text) < lo:
            text = f"{text} {self.rng.choice(self.words)}"
        if len(text) > hi:
            text = text[:hi].rstrip() if hi > 0 else ""
            if len(text) < lo:  # rstrip ate into the minimum
                text = text.ljust(lo, "a")
        return text

    def _number(self, schema: Mapping[str, Any]) -> float | int:
        lo, hi, lo_open, hi_open = _bounds(schema)
        multiple = schema.get("multipleOf")
        if isinstance(multiple, int | float) and multiple > 0:
            return self._multiple(lo, hi, lo_open, hi_open, float(multiple))
        for _ in range(8):
            value = round(self.rng.uniform(lo, hi), 2)
            if _within(value, lo, hi, lo_open, hi_open):
                return value
        return (lo + hi) / 2

    def _integer(self, schema: Mapping[str, Any]) -> int:
        lo, hi, lo_open, hi_open = _bounds(schema)
        multiple = schema.get("multipleOf")
        step = float(multiple) if isinstance(multiple, int | float) and multiple > 0 else 1.0
        step = step if step >= 1 and step.is_integer() else 1.0
        return int(self._multiple(lo, hi, lo_open, hi_open, step))

    def _multiple(
        self, lo: float, hi: float, lo_open: bool, hi_open: bool, step: float
    ) -> float | int:
        first = math.ceil(lo / step)
        last = math.floor(hi / step)
        if lo_open and first * step <= lo:
            first += 1
        if hi_open and last * step >= hi:
            last -= 1
        value = (first if last < first else self.rng.randint(first, last)) * step
        # Integral steps give integers; fractional ones are rounded to the step's decimals so
        # 0.1 * 3 is 0.3 (jsonschema checks multipleOf with a float tolerance of its own).
        return int(value) if float(value).is_integer() else round(value, 10)


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _bounds(schema: Mapping[str, Any]) -> tuple[float, float, bool, bool]:
    """(low, high, low exclusive, high exclusive); a missing side is 100 from the other."""
    lo, hi = _num(schema.get("minimum")), _num(schema.get("maximum"))
    ex_lo, ex_hi = _num(schema.get("exclusiveMinimum")), _num(schema.get("exclusiveMaximum"))
    lo_open = hi_open = False
    if ex_lo is not None and (lo is None or ex_lo >= lo):
        lo, lo_open = ex_lo, True
    if ex_hi is not None and (hi is None or ex_hi <= hi):
        hi, hi_open = ex_hi, True
    if lo is None and hi is None:
        return -_DEFAULT_SPAN, _DEFAULT_SPAN, False, False
    if lo is None:
        assert hi is not None
        return hi - _DEFAULT_SPAN, hi, False, hi_open
    if hi is None:
        return lo, lo + _DEFAULT_SPAN, lo_open, False
    return lo, hi, lo_open, hi_open


def _within(value: float, lo: float, hi: float, lo_open: bool, hi_open: bool) -> bool:
    above = value > lo if lo_open else value >= lo
    below = value < hi if hi_open else value <= hi
    return above and below


def _int(value: Any, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return default


def _same_json(a: Any, b: Any) -> bool:
    # JSON Schema equality: 1 == 1.0 but True != 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _count_valid(value: Any, branches: list[Any], gen: _Generator) -> int:
    return sum(1 for branch in branches if _fits(value, branch, gen))


def _fits(value: Any, branch: Any, gen: _Generator) -> bool:
    """A cheap, type-level check (enough to tell oneOf branches apart)."""
    if not isinstance(branch, Mapping):
        return True
    branch = gen._resolve(branch, 0)
    if "const" in branch:
        return _same_json(value, branch["const"])
    if isinstance(branch.get("enum"), list):
        return any(_same_json(value, e) for e in branch["enum"])
    kind = branch.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else None
    if kinds is None:
        return True
    return any(_is_type(value, k) for k in kinds)


def _is_type(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return False
