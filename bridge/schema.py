"""JSON Schema of every wire message, generated from the models (docs/bridge-schema.json).

Why generated: the models are the contract; a hand-written schema would drift.
A test checks the committed file equals :func:`schema_json`.
"""

from __future__ import annotations

import json
from typing import Any

from .messages import GAME_MESSAGE_TYPES, MESSAGE_ADAPTER, PROTOCOL_VERSION, SUBPROTOCOL

__all__ = ["message_schema", "schema_json"]


def message_schema() -> dict[str, Any]:
    schema = MESSAGE_ADAPTER.json_schema(ref_template="#/$defs/{model}")
    out: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://npcagent.dev/schema/bridge-v1.json",
        "title": f"npc bridge protocol v{PROTOCOL_VERSION} ({SUBPROTOCOL})",
        "description": (
            "One msgpack map per binary websocket frame, shown here as JSON. Field t is the "
            f"message type. Sent by the game: {', '.join(sorted(GAME_MESSAGE_TYPES))}; "
            "everything else is sent by the runtime. See docs/protocol.md."
        ),
    }
    out.update(schema)
    return out


def schema_json() -> str:
    return json.dumps(message_schema(), indent=2, sort_keys=True) + "\n"
