"""The offline model as an ASGI app: an OpenAI-compatible chat-completions endpoint.

A raw ASGI callable rather than Starlette: it has three routes and no middleware, and the
offline model must never be the bottleneck of a simulation (>= 5,000 streamed completions per
CPU second, bench/offline_model.py). Starlette's request/response objects, routing and
StreamingResponse task group cost several times the whole completion here.

Which character answers: ``model`` is the character id (the runtime sends it when
``base_url = "offline"``); ``character_id`` is accepted too, as on the character endpoint.
An unknown id still answers, with the generic schema-driven policy over the request's tools.

Routes: ``POST /v1/chat/completions`` (alias ``/chat/completions``), ``GET /v1/models``
(alias ``/models``) listing the characters. Bad requests get OpenAI-shaped errors (400, 404,
405); nothing a client sends raises out of the app.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from runtime.offline.character import OfflineCharacter
from runtime.offline.misbehaviour import Fault, Misbehaviour, apply_fault
from runtime.offline.policy import Reply, decide
from runtime.offline.render import (
    completion_body,
    error_body,
    stream_error_event,
    stream_events,
)

__all__ = ["OFFLINE_CREATED", "OfflineModel"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# `created` of every completion unless a clock is given: outputs stay byte-identical per seed.
OFFLINE_CREATED = 1_735_689_600  # 2025-01-01T00:00:00Z
_COMPLETIONS_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})
_MAX_BODY = 8 * 1024 * 1024
_CANONICAL = json.JSONEncoder(
    sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
).encode
_ATTEMPTS_CAP = 65_536
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
_JSON_HEADERS = [(b"content-type", b"application/json")]


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class OfflineModel:
    """The ASGI app. Deterministic for a seed and a conversation (see `runtime.offline.policy`).

    ``call_rate``: how often the schema-driven policy calls a tool instead of speaking.
    ``clock``: source of ``created`` (default: the fixed `OFFLINE_CREATED`).
    """

    def __init__(
        self,
        characters: Mapping[str, OfflineCharacter] | None = None,
        *,
        seed: int = 0,
        misbehaviour: Misbehaviour | None = None,
        call_rate: float = 0.5,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.characters: dict[str, OfflineCharacter] = dict(characters or {})
        self.seed = seed
        self.misbehaviour = misbehaviour
        self.call_rate = call_rate
        self._clock = clock
        self._seed_bytes = seed.to_bytes(16, "big", signed=True)
        # Attempts per conversation digest, so a retried request can draw a different fault.
        self._attempts: dict[bytes, int] = {}
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)

    # -- routing ------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path in _COMPLETIONS_PATHS:
            if method != "POST":
                await _respond(send, 405, error_body("Use POST.", "invalid_request_error"))
                return
            body = await _read_body(receive)
            if body is None:
                await _respond(
                    send, 413, error_body("Request body too large.", "invalid_request_error")
                )
                return
            try:
                answer = self._answer(body)
            except Exception:
                # Last line of defence for "bad input never crashes": a request shape the
                # policy did not foresee (a 2,000-deep schema, a TOML date in a rule's args)
                # becomes a 500 in OpenAI's shape, which clients retry or report.
                answer = _Answer(
                    500,
                    _JSON_HEADERS,
                    [error_body("The offline model failed on this request.", "server_error")],
                )
            await _deliver(send, answer)
        elif path in _MODELS_PATHS and method == "GET":
            await _respond(send, 200, self._models())
        else:
            await _respond(
                send,
                404,
                error_body(f"Unknown path {path}.", "invalid_request_error", code="not_found"),
            )

    def _models(self) -> bytes:
        data = [
            {"id": cid, "object": "model", "created": OFFLINE_CREATED, "owned_by": "offline"}
            for cid in sorted(self.characters)
        ]
        return json.dumps({"object": "list", "data": data}, separators=(",", ":")).encode()

    # -- completions --------------------------------------------------------------------------

    def _answer(self, body: bytes) -> _Answer:
        """The whole response to a completions request, built before anything is sent."""
        self.requests += 1
        try:
            request = _parse(body)
        except _BadRequest as exc:
            error = error_body(str(exc), "invalid_request_error", param=exc.param)
            return _Answer(400, _JSON_HEADERS, [error])
        messages: list[dict[str, Any]] = request["messages"]
        tools: list[dict[str, Any]] = request.get("tools") or []
        model = request.get("model")
        model = model if isinstance(model, str) else "offline"
        character_id = request.get("character_id")
        character = self.characters.get(character_id if isinstance(character_id, str) else model)

        digest = self._digest(model, messages)
        rng = random.Random(int.from_bytes(digest[:16], "big"))
        max_tokens = request.get("max_completion_tokens", request.get("max_tokens"))
        reply = decide(
            character,
            messages,
            tools,
            rng,
            tool_choice=request.get("tool_choice"),
            call_rate=self.call_rate,
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        )
        stream = request.get("stream") is True
        fault = self._fault(digest, reply, stream)
        if fault is Fault.HTTP_429:
            retry_after = self.misbehaviour.retry_after_s if self.misbehaviour else 1
            error = error_body(
                "Rate limit reached for the offline model (misbehaviour). Try again later.",
                "requests",
                code="rate_limit_exceeded",
            )
            headers = [*_JSON_HEADERS, (b"retry-after", str(retry_after).encode())]
            return _Answer(429, headers, [error])
        if fault is Fault.HTTP_500:
            error = error_body(
                "The server had an error while processing your request.", "server_error"
            )
            return _Answer(500, _JSON_HEADERS, [error])
        if fault is not None:
            offered = frozenset(
                t["function"]["name"]
                for t in tools
                if isinstance(t, dict)
                and isinstance(t.get("function"), dict)
                and isinstance(t["function"].get("name"), str)
            )
            reply = apply_fault(reply, fault, offered)

        completion_id = "chatcmpl-" + digest[16:28].hex()
        created = int(self._clock()) if self._clock is not None else OFFLINE_CREATED
        prompt_tokens = len(body) // 4
        if not stream:
            out = completion_body(
                reply,
                completion_id=completion_id,
                model=model,
                created=created,
                prompt_tokens=prompt_tokens,
            )
            return _Answer(200, _JSON_HEADERS, [out])
        options = request.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        events = stream_events(
            reply,
            completion_id=completion_id,
            model=model,
            created=created,
            prompt_tokens=prompt_tokens,
            include_usage=include_usage,
        )
        if fault is Fault.ERROR_MID_STREAM:
            cut = max(1, (len(events) - 1) // 2)
            events = [
                *events[:cut],
                stream_error_event("The offline model failed mid-stream.", "offline_misbehaviour"),
            ]
        delay = self.misbehaviour.delay_s if fault is Fault.SLOW and self.misbehaviour else None
        return _Answer(200, _SSE_HEADERS, events, delay)

    def _digest(self, model: str, messages: list[dict[str, Any]]) -> bytes:
        """A stable digest of seed, model and conversation (never Python's salted hash())."""
        canonical = _CANONICAL(messages)
        h = hashlib.blake2b(self._seed_bytes, digest_size=32)
        h.update(model.encode())
        h.update(b"\x00")
        h.update(canonical.encode())
        return h.digest()

    def _fault(self, digest: bytes, reply: Reply, stream: bool) -> Fault | None:
        if self.misbehaviour is None or self.misbehaviour.rate <= 0.0:
            return None
        attempt = self._attempts.get(digest, 0)
        if len(self._attempts) >= _ATTEMPTS_CAP:
            self._attempts.clear()
        self._attempts[digest] = attempt + 1
        rng = random.Random(int.from_bytes(digest, "big") ^ (attempt + 1) << 7)
        return self.misbehaviour.choose(rng, has_tool_call=bool(reply.tool_calls), stream=stream)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _BadRequest("The request body is not valid JSON.") from None
    except RecursionError:
        raise _BadRequest("The request body is nested too deeply.") from None
    if not isinstance(request, dict):
        raise _BadRequest("The request body must be a JSON object.")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("`messages` must be a non-empty array.", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _BadRequest(f"messages[{i}] must be an object with a `role`.", f"messages[{i}]")
    tools = request.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _BadRequest("`tools` must be an array.", "tools")
    return request


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > _MAX_BODY:
                return None
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": headers or _JSON_HEADERS}
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


@dataclass(frozen=True, slots=True)
class _Answer:
    """A response ready to send. ``delay``: send event by event with this pause (slow stream)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    parts: list[bytes]
    delay: float | None = None


async def _deliver(send: Send, answer: _Answer) -> None:
    await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
    if answer.delay is None:
        # One write: a buffered transport (ASGITransport) or a socket sees the same bytes, and
        # one ASGI send instead of one per event is most of the speed of this app.
        body = answer.parts[0] if len(answer.parts) == 1 else b"".join(answer.parts)
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return
    for part in answer.parts:
        await send({"type": "http.response.body", "body": part, "more_body": True})
        await asyncio.sleep(answer.delay)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
