"""Helpers for the character endpoint tests: upstreams a test controls (the offline model,
misbehaving or recording), the openai SDK pointed at an app, and an SSE splitter."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import openai
from starlette.applications import Starlette

from runtime.completions import (
    Choice,
    Completion,
    CompletionsClient,
    RetryPolicy,
    StreamEvent,
    TextDelta,
    ToolCall,
    Usage,
)
from runtime.offline import OFFLINE_BASE_URL, Misbehaviour, OfflineModel, offline_characters
from runtime.project import Project
from runtime.session import ModelClient

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "village"
KEY = "test-key-0123456789"
KEYS_ENV = {"NPC_API_KEYS": f"other-key, {KEY}"}

Scope = MutableMapping[str, Any]
ASGI = Callable[
    [Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


class RecordingASGI:
    """Wraps an upstream ASGI app and keeps every request body it received (parsed JSON)."""

    def __init__(self, app: ASGI) -> None:
        self.app = app
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        self.bodies.append(json.loads(body))
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def offline_upstream(
    project: Project,
    *,
    misbehaviour: Misbehaviour | None = None,
    recorder: list[RecordingASGI] | None = None,
    max_retries: int = 0,
) -> Callable[[str], ModelClient]:
    """A ``Runtime(model_client=...)`` factory: the offline model of the project, optionally
    misbehaving, optionally recording what it was sent, with a chosen retry budget."""

    def factory(base_url: str) -> ModelClient:
        app: ASGI = OfflineModel(offline_characters(project), misbehaviour=misbehaviour)
        if recorder is not None:
            recording = RecordingASGI(app)
            recorder.append(recording)
            app = recording
        http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app))
        return CompletionsClient(
            OFFLINE_BASE_URL, None, http=http, retry=RetryPolicy(max_retries=max_retries)
        )

    return factory


def sdk_client(app: Starlette, *, api_key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url="http://npc.test/v1",
        api_key=api_key,
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app)),
    )


def sse_events(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order (``[DONE]`` included)."""
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line]
        if not lines:
            continue
        assert all(line.startswith("data: ") for line in lines), block
        events.append("\n".join(line[len("data: ") :] for line in lines))
    return events


@dataclass
class Step:
    """One scripted model answer: text (streamed word by word), then tool calls."""

    text: str = ""
    calls: Sequence[tuple[str, dict[str, Any]]] = ()
    finish: str | None = None
    gate: asyncio.Event | None = None
    """When set, the stream pauses after its first text delta until the event is set."""
    fail: Exception | None = None
    """Raised after the text has been streamed (a provider failing mid-stream)."""


class _ScriptedStream:
    def __init__(self, model: ScriptedModel, step: Step, number: int) -> None:
        self._model = model
        self._step = step
        calls = tuple(
            ToolCall(f"call_{number}_{i}", name, json.dumps(args))
            for i, (name, args) in enumerate(step.calls)
        )
        finish = step.finish or ("tool_calls" if calls else "stop")
        self._completion = Completion(
            f"scripted-{number}",
            "scripted",
            (Choice(0, finish, step.text or None, None, calls),),
            Usage(100 + number, 10 + number, 110 + 2 * number),
        )

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        words = re.findall(r"\s*\S+", self._step.text)
        for index, word in enumerate(words):
            yield TextDelta(0, word)
            if index == 0 and self._step.gate is not None:
                self._model.waiting.set()
                await self._step.gate.wait()
        if self._step.fail is not None:
            raise self._step.fail
        self._model.finished += 1

    @property
    def completion(self) -> Completion:
        return self._completion


class ScriptedModel:
    """A model client (``runtime.session.ModelClient``) answering from a script, recording the
    request bodies, and noting when a stream was abandoned (cancelled) mid-way."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)
        self.bodies: list[dict[str, Any]] = []
        self.finished = 0
        self.waiting = asyncio.Event()
        self.cancelled = asyncio.Event()

    @contextlib.asynccontextmanager
    async def stream(self, body: Mapping[str, Any]) -> AsyncIterator[_ScriptedStream]:
        self.bodies.append(json.loads(json.dumps(body)))
        number = len(self.bodies)
        step = self.steps.pop(0) if self.steps else Step("(script exhausted)")
        try:
            yield _ScriptedStream(self, step, number)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    def factory(self, base_url: str) -> ModelClient:
        return self
