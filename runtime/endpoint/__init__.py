"""The character endpoint: an OpenAI-compatible ``/v1/chat/completions`` where ``model`` is a
character id (the Mindforge API), so anything that speaks the OpenAI SDK can talk to an NPC.

Compose it (the CLI does this in ``npc serve``)::

    app = create_app(project, runtime)          # a Starlette app
    await serve_http(app, "127.0.0.1", 8080)    # uvicorn

Each request runs one stateless turn of the runtime's own turn loop over the client's messages
(:mod:`.turn`); runtime-executed capabilities run inside the request, game-executed ones and
client tools come back as ``tool_calls``. Layers: :mod:`.schema` (request validation, sans-I/O)
and :mod:`.render` (response bytes, sans-I/O) around :mod:`.app` (Starlette) and :mod:`.serve`
(uvicorn). docs/endpoint.md is the user-facing text.

Exceptions (each is an HTTP answer in OpenAI's error shape; nothing else reaches a client)::

    EndpointError                 500 internal_error (a bug; logged, never detailed)
    ├── InvalidRequest            400 body not JSON / field missing or invalid (param = field)
    ├── BodyTooLarge              413 body over [http] max_body_bytes
    ├── NotAuthenticated          401 missing or wrong Bearer key
    ├── ModelNotFound             404 model_not_found: no such character
    ├── RouteError                404 unknown path, 405 wrong method
    ├── UpstreamRateLimited       429 the character's model is rate limited (Retry-After)
    └── UpstreamFailed            502 the character's model failed
"""

from runtime.endpoint.app import create_app
from runtime.endpoint.auth import ApiKeys
from runtime.endpoint.errors import (
    BodyTooLarge,
    EndpointError,
    InvalidRequest,
    ModelNotFound,
    NotAuthenticated,
    RouteError,
    UpstreamFailed,
    UpstreamRateLimited,
)
from runtime.endpoint.schema import ChatRequest, parse_request
from runtime.endpoint.serve import running_http, serve_http

__all__ = [
    "ApiKeys",
    "BodyTooLarge",
    "ChatRequest",
    "EndpointError",
    "InvalidRequest",
    "ModelNotFound",
    "NotAuthenticated",
    "RouteError",
    "UpstreamFailed",
    "UpstreamRateLimited",
    "create_app",
    "parse_request",
    "running_http",
    "serve_http",
]
