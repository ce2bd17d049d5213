"""The Starlette app: routes, auth, body limit, and the two response modes.

A streamed answer does not start (no status line) until the turn has produced its first text or
ended: a model that is rate limited or down before saying anything gets a real 429 or 502, which
is what clients and the openai SDK retry on. Once text has gone out, a later failure can only be
reported in the stream, as OpenAI does: a ``data: {"error": ...}`` event, after which the openai
SDK raises ``APIError``.

A client that disconnects cancels its turn (and so the upstream request): a watcher task reads
the ASGI ``receive`` channel for ``http.disconnect`` for the whole life of the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from runtime.endpoint.auth import ApiKeys
from runtime.endpoint.errors import (
    BodyTooLarge,
    EndpointError,
    InvalidRequest,
    ModelNotFound,
    RouteError,
)
from runtime.endpoint.render import DONE, ChunkRenderer, completion_body, new_completion_id, sse
from runtime.endpoint.schema import parse_request
from runtime.endpoint.turn import HttpTurn, TurnEnd, TurnFactory
from runtime.project import Project
from runtime.runtime import Runtime

__all__ = ["create_app"]

logger = logging.getLogger("runtime.endpoint")


def create_app(
    project: Project, runtime: Runtime, *, environ: Mapping[str, str] | None = None
) -> Starlette:
    """The character endpoint for ``project``; model calls go through ``runtime``'s clients.

    API keys are read now from the variable named by ``[http] api_keys_env`` in ``environ``
    (default ``os.environ``); when it is unset or empty the endpoint is open (and says so in
    the log)."""
    settings = project.config.http
    keys = ApiKeys.from_env(settings.api_keys_env, os.environ if environ is None else environ)
    endpoint = _Endpoint(project, runtime, keys, settings.max_body_bytes)
    routes = [
        Route("/v1/chat/completions", endpoint.chat, methods=["POST"]),
        Route("/chat/completions", endpoint.chat, methods=["POST"]),
        Route("/v1/models", endpoint.models, methods=["GET"]),
        Route("/models", endpoint.models, methods=["GET"]),
        Route("/v1/models/{model_id}", endpoint.model, methods=["GET"]),
        Route("/models/{model_id}", endpoint.model, methods=["GET"]),
        Route("/healthz", endpoint.health, methods=["GET"]),
        Route("/metrics", endpoint.metrics, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: _http_exception,
            EndpointError: _endpoint_error,
            Exception: _internal_error,
        },
    )
    app.state.keys = keys
    return app


def error_response(error: EndpointError) -> Response:
    return Response(
        error.body(), status_code=error.status, headers=error.headers, media_type="application/json"
    )


async def _endpoint_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EndpointError)
    return error_response(exc)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug: logged by the server with its traceback; the client learns nothing of it."""
    return error_response(EndpointError("Internal error.", code="internal_error"))


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown path, wrong method), in OpenAI's shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"Unknown request URL: {request.method} {request.url.path}."
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed for {request.url.path}."
    else:
        message = str(exc.detail)
    return error_response(RouteError(exc.status_code, message, exc.headers))


class _Endpoint:
    def __init__(
        self, project: Project, runtime: Runtime, keys: ApiKeys, max_body_bytes: int
    ) -> None:
        self.project = project
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.turns = TurnFactory(project, runtime)
        self.runtime_metrics = runtime.metrics
        self.created = int(time.time())

    # -- small routes -------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "characters": len(self.project.characters)})

    async def metrics(self, request: Request) -> Response:
        """The runtime's counters (NPCs driven by games over the bridge), Prometheus text."""
        return PlainTextResponse(
            self.runtime_metrics.render(), media_type="text/plain; version=0.0.4"
        )

    def _model_entry(self, character_id: str) -> dict[str, Any]:
        return {
            "id": character_id,
            "object": "model",
            "created": self.created,
            "owned_by": self.project.config.project.name,
        }

    async def models(self, request: Request) -> Response:
        self.keys.check(request.headers.get("authorization"))
        data = [self._model_entry(cid) for cid in sorted(self.project.characters)]
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        self.keys.check(request.headers.get("authorization"))
        model_id = str(request.path_params["model_id"])
        if model_id not in self.project.characters:
            raise _not_found(model_id, None)
        return JSONResponse(self._model_entry(model_id))

    # -- chat completions ---------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        self.keys.check(request.headers.get("authorization"))
        body = await self._read_body(request)
        chat = parse_request(body)
        character = self.project.characters.get(chat.character)
        if character is None:
            raise _not_found(chat.character, chat.character_field)
        completion_id = new_completion_id()
        created = int(time.time())
        turn = self.turns.begin(chat, character, completion_id.removeprefix("chatcmpl-"))
        watcher = asyncio.create_task(_watch_disconnect(request.receive, turn))
        handed_over = False
        try:
            if not chat.stream:
                done = await turn.result()
                if done.error is not None:
                    return error_response(done.error)
                text = "".join(turn.text)
                return Response(
                    completion_body(
                        completion_id=completion_id,
                        created=created,
                        model=chat.character,
                        content=text if text or not done.deferred else None,
                        tool_calls=done.deferred,
                        finish_reason=done.finish_reason,
                        usage=done.usage,
                    ),
                    media_type="application/json",
                )
            pieces, end = await turn.next()
            if end is not None and end.error is not None:
                return error_response(end.error)
            renderer = ChunkRenderer(
                completion_id, created, chat.character, include_usage=chat.include_usage
            )
            handed_over = True
            return _EventStream(turn, watcher, renderer, pieces, end, chat.include_usage)
        finally:
            if not handed_over:
                watcher.cancel()
                await turn.aclose()

    async def _read_body(self, request: Request) -> bytes:
        limit = self.max_body_bytes
        too_large = BodyTooLarge(
            f"The request body is larger than {limit} bytes.", code="request_too_large"
        )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
        except ClientDisconnect:
            raise InvalidRequest("The client disconnected while sending the body.") from None
        return b"".join(chunks)


def _not_found(character_id: str, field: str | None) -> ModelNotFound:
    return ModelNotFound(
        f"The model {character_id!r} does not exist: it is not a character of this project "
        "(GET /v1/models lists them).",
        param=field,
        code="model_not_found",
    )


async def _watch_disconnect(receive: Receive, turn: HttpTurn) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            turn.cancel()
            return


class _EventStream(Response):
    """The SSE body of one streamed completion. Owns the turn and the disconnect watcher from
    the moment it is returned, and closes both whatever happens."""

    media_type = "text/event-stream"

    def __init__(
        self,
        turn: HttpTurn,
        watcher: asyncio.Task[None],
        renderer: ChunkRenderer,
        pieces: list[str],
        end: TurnEnd | None,
        include_usage: bool,
    ) -> None:
        self._turn = turn
        self._watcher = watcher
        self._renderer = renderer
        self._first = pieces
        self._end = end
        self._include_usage = include_usage
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._stream(send)
        except OSError:  # ASGI 2.4 servers raise on a send to a closed connection
            self._turn.cancel()
        finally:
            self._watcher.cancel()
            with contextlib.suppress(BaseException):
                await self._watcher
            await self._turn.aclose()

    async def _stream(self, send: Send) -> None:
        renderer = self._renderer
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        end = self._end
        tool_calls_only = end is not None and not self._first and bool(end.deferred)
        out = [renderer.role(tool_calls_only=tool_calls_only)]
        out.extend(renderer.content(piece) for piece in self._first)
        while end is None:
            await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
            pieces, end = await self._turn.next()
            out = [renderer.content(piece) for piece in pieces]
        if end.error is not None:
            out.append(sse(end.error.payload()))
        else:
            out.extend(renderer.tool_calls(end.deferred))
            out.append(renderer.finish(end.finish_reason))
            if self._include_usage:
                out.append(renderer.usage(end.usage))
            out.append(DONE)
        await send({"type": "http.response.body", "body": b"".join(out), "more_body": False})
