"""OpenAI strict-mode tool schemas.

Strict mode makes the model's arguments conform to the schema by construction, which removes
most malformed tool calls at the source. It demands every object to close
(``additionalProperties: false``) and list all its properties as required; optional
properties become nullable. Schemas using keywords strict mode rejects are sent as they are,
non-strict, rather than silently weakened.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["close_objects", "to_strict"]

_UNSUPPORTED = frozenset(
    {
        "allOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
        "dependentRequired",
        "dependentSchemas",
        "patternProperties",
        "unevaluatedProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "contains",
        "minContains",
        "maxContains",
        "uniqueItems",
    }
)
_DROPPED = ("title", "default")


class _NotStrict(Exception):
    pass


def to_strict(schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """The strict-mode form of an object schema, or None when strict mode cannot express it."""
    if schema.get("type") != "object" or "anyOf" in schema:
        return None
    try:
        converted: dict[str, Any] = _node(copy.deepcopy(dict(schema)))
        return converted
    except _NotStrict:
        return None


def close_objects(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema with every object closed (``additionalProperties: false`` where unset) but
    its ``required`` lists kept: what arguments of a strict tool are checked against, so an
    extra field is refused as the model was told, and an omitted optional is still fine."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {
            key: {k: walk(v) for k, v in value.items()}
            if key in ("properties", "$defs", "definitions") and isinstance(value, dict)
            else walk(value)
            for key, value in node.items()
        }
        if node.get("type") == "object" or "properties" in node:
            out.setdefault("additionalProperties", False)
        return out

    closed: dict[str, Any] = walk(dict(schema))
    return closed


def _node(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if _UNSUPPORTED.intersection(node):
        raise _NotStrict
    for key in _DROPPED:
        if key in node and not isinstance(node[key], dict):
            node.pop(key)
    _move_length_bounds(node)
    for key in ("$defs", "definitions"):
        if isinstance(node.get(key), dict):
            node[key] = {name: _node(sub) for name, sub in node[key].items()}
    if "anyOf" in node:
        node["anyOf"] = [_node(sub) for sub in node["anyOf"]]
    if isinstance(node.get("items"), dict):
        node["items"] = _node(node["items"])
    elif "items" in node or "prefixItems" in node:
        raise _NotStrict
    if node.get("type") == "object" or "properties" in node:
        _close_object(node)
    return node


def _move_length_bounds(node: dict[str, Any]) -> None:
    """String length bounds are not part of strict mode's documented subset, so they move
    from the schema into the description: the model still reads them, and the arguments are
    still checked against the designer's schema, bounds included."""
    low, high = node.pop("minLength", None), node.pop("maxLength", None)
    if low is None and high is None:
        return
    if low is not None and high is not None:
        hint = f"{low} to {high} characters"
    elif low is not None:
        hint = f"at least {low} characters"
    else:
        hint = f"at most {high} characters"
    description = node.get("description")
    node["description"] = f"{description} ({hint})" if description else hint.capitalize()


def _close_object(node: dict[str, Any]) -> None:
    extra = node.get("additionalProperties", False)
    if extra is not False:
        raise _NotStrict
    properties: dict[str, Any] = node.get("properties") or {}
    required = set(node.get("required") or ())
    closed: dict[str, Any] = {}
    for name, sub in properties.items():
        converted = _node(sub)
        closed[name] = converted if name in required else _nullable(converted)
    node["properties"] = closed
    node["required"] = list(closed)
    node["additionalProperties"] = False


def _nullable(node: Any) -> Any:
    if not isinstance(node, dict):
        raise _NotStrict
    kind = node.get("type")
    if "enum" in node:
        if None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        if isinstance(kind, str):
            node["type"] = [kind, "null"]
        return node
    if isinstance(kind, str) and "$ref" not in node:
        node["type"] = [kind, "null"]
        return node
    if isinstance(kind, list):
        if "null" not in kind:
            node["type"] = [*kind, "null"]
        return node
    if "anyOf" in node:
        if not any(isinstance(s, dict) and s.get("type") == "null" for s in node["anyOf"]):
            node["anyOf"] = [*node["anyOf"], {"type": "null"}]
        return node
    description = node.pop("description", None)
    wrapped: dict[str, Any] = {"anyOf": [node, {"type": "null"}]}
    if description is not None:
        wrapped["description"] = description
    return wrapped
