"""The embedded offline model: a deterministic OpenAI-compatible chat-completions endpoint.

Everything in npcagent runs with no network and no key; this is the model that makes that true.
`OfflineModel` is an ASGI app serving ``POST /v1/chat/completions`` (streaming SSE exactly as
OpenAI sends it, and non-streaming) and ``GET /v1/models``. With ``base_url = "offline"`` the
runtime talks to it in-process through ``httpx2.ASGITransport`` (`make_http_client`), so the
completions client's real parsing path is exercised; `serve_offline_model` / ``npc
offline-model`` expose it on a port for other tools.

The request's ``model`` is the character id. The reply is deterministic for the model's seed and
the conversation: designer rules first (`OfflineRule`), else a seeded choice between an
in-character line and a tool call with arguments drawn from the tool's JSON Schema; after a tool
result it acknowledges in one sentence and never calls again. `Misbehaviour` makes it fail on
purpose at a seeded rate (bad arguments, unknown tools, missing ids, slow streams, mid-stream
errors, HTTP 429/500).

Exceptions::

    OfflineError                  base of this package
     └── OfflineConfigError       (also ValueError) a character, rule or misbehaviour setting
                                  that cannot be used; raised at construction, never per request

Request problems never raise: they are HTTP errors in OpenAI's shape.
"""

from runtime.offline.app import OFFLINE_CREATED, OfflineModel
from runtime.offline.character import OfflineCharacter, OfflineRule
from runtime.offline.client import (
    OFFLINE_BASE_URL,
    REPLAY_BASE_URL,
    endpoint_base_url,
    make_http_client,
)
from runtime.offline.convert import offline_character, offline_characters
from runtime.offline.errors import OfflineConfigError, OfflineError
from runtime.offline.misbehaviour import Fault, Misbehaviour
from runtime.offline.policy import Reply, ToolCall, decide
from runtime.offline.schema_args import generate_arguments, generate_value
from runtime.offline.serve import running_offline_model, serve_offline_model

__all__ = [
    "OFFLINE_BASE_URL",
    "OFFLINE_CREATED",
    "REPLAY_BASE_URL",
    "Fault",
    "Misbehaviour",
    "OfflineCharacter",
    "OfflineConfigError",
    "OfflineError",
    "OfflineModel",
    "OfflineRule",
    "Reply",
    "ToolCall",
    "decide",
    "endpoint_base_url",
    "generate_arguments",
    "generate_value",
    "make_http_client",
    "offline_character",
    "offline_characters",
    "running_offline_model",
    "serve_offline_model",
]
