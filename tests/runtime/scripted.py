"""A scripted chat-completions endpoint on loopback, for the runtime's tests.

Why a real server: the runtime's turn loop talks to the model only through the real
``CompletionsClient`` (httpx2, SSE decoding, tool-call assembly). Serving SSE bytes built per
request on a loopback socket exercises all of it, and every request body is recorded so a test
can assert on exactly what the model was shown (the tool messages, the tools offered).

``ScriptedModel(script)``: ``script`` is a list of :class:`Reply` (one per request, in order;
the last one repeats once the list is used up) or a function from the request body to a Reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2

from runtime.completions import CompletionsClient, RetryPolicy, Timeouts

__all__ = [
    "FakeLink",
    "GameCall",
    "Reply",
    "ScriptedModel",
    "ToolCallSpec",
    "call",
    "eventually",
    "make_project",
    "tool_messages",
    "tool_names",
]

_ids = itertools.count(1)


@dataclass(frozen=True)
class ToolCallSpec:
    name: str
    arguments: str | Mapping[str, Any] = "{}"
    id: str = ""

    def arguments_text(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments), separators=(",", ":"))


def call(name: str, arguments: str | Mapping[str, Any] = "{}", id: str = "") -> ToolCallSpec:
    return ToolCallSpec(name, arguments, id or f"call_{next(_ids)}")


@dataclass
class Reply:
    """One answer of the model.

    ``text`` is streamed as word deltas (or as the given pieces); ``calls`` follow as tool-call
    deltas. ``gate`` makes the server wait for the event at ``gate_at``: ``start`` (before the
    status line: a model that hangs) or ``after_text`` (mid-stream: the NPC is speaking).
    """

    text: str | Sequence[str] = ""
    calls: Sequence[ToolCallSpec] = ()
    delay_s: float = 0.0
    gate: asyncio.Event | None = None
    gate_at: Literal["start", "after_text"] = "start"
    status: int = 200
    usage: tuple[int, int] | None = (20, 5)

    def pieces(self) -> list[str]:
        if isinstance(self.text, str):
            words = self.text.split(" ")
            return [w if i == 0 else " " + w for i, w in enumerate(words) if self.text]
        return list(self.text)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "scripted",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def sse_events(reply: Reply) -> tuple[list[bytes], list[bytes]]:
    """The SSE events of a reply: (text part, rest) so a gate can sit between them."""
    head = [_chunk({"role": "assistant", "content": ""})]
    head += [_chunk({"content": piece}) for piece in reply.pieces()]
    tail: list[bytes] = []
    for index, spec in enumerate(reply.calls):
        start = {
            "index": index,
            "id": spec.id or f"call_{next(_ids)}",
            "type": "function",
            "function": {"name": spec.name, "arguments": ""},
        }
        tail.append(_chunk({"tool_calls": [start]}))
        text = spec.arguments_text()
        for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
            if piece:
                tail.append(
                    _chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                )
    tail.append(_chunk({}, "tool_calls" if reply.calls else "stop"))
    if reply.usage is not None:
        prompt, completion = reply.usage
        usage = {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "scripted",
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
        tail.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
    tail.append(b"data: [DONE]\n\n")
    return head, tail


Script = Sequence[Reply] | Callable[[dict[str, Any]], Reply]


class ScriptedModel:
    """``async with ScriptedModel(script) as model:`` serves on ``model.base_url``;
    ``model.client()`` is a real CompletionsClient pointed at it; ``model.requests`` holds
    every request body (parsed JSON) in arrival order."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._clients: list[CompletionsClient] = []
        self._http: list[httpx2.AsyncClient] = []
        self._arrived = asyncio.Condition()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def client(self, *, max_retries: int = 0, read_timeout_s: float = 30.0) -> CompletionsClient:
        http = httpx2.AsyncClient()
        self._http.append(http)
        client = CompletionsClient(
            self.base_url,
            None,
            http=http,
            timeouts=Timeouts(connect=5.0, read=read_timeout_s, total=read_timeout_s * 2),
            retry=RetryPolicy(max_retries=max_retries, initial_delay=0.01, max_delay=0.05),
        )
        self._clients.append(client)
        return client

    def factory(self, _base_url: str) -> CompletionsClient:
        """For ``Runtime(model_client=model.factory)``."""
        return self.client()

    async def wait_requests(self, count: int, timeout_s: float = 5.0) -> dict[str, Any]:
        """Wait until ``count`` requests arrived; return the last of them."""
        async with asyncio.timeout(timeout_s), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return self.requests[count - 1]

    async def __aenter__(self) -> ScriptedModel:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self._clients:
            await client.aclose()
        for http in self._http:
            await http.aclose()
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await self._server.wait_closed()

    def _reply_for(self, body: dict[str, Any]) -> Reply:
        if callable(self.script):
            return self.script(body)
        index = min(len(self.requests), len(self.script)) - 1
        return self.script[index]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                body = json.loads(raw)
                async with self._arrived:
                    self.requests.append(body)
                    self._arrived.notify_all()
                reply = self._reply_for(body)
                await self._answer(reply, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _answer(self, reply: Reply, writer: asyncio.StreamWriter) -> None:
        if reply.gate is not None and reply.gate_at == "start":
            await reply.gate.wait()
        if reply.status != 200:
            data = json.dumps({"error": {"message": "scripted failure", "type": "x"}}).encode()
            writer.write(
                b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (reply.status, len(data), data)
            )
            await writer.drain()
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        head, tail = sse_events(reply)
        for index, event in enumerate(head + tail):
            if index == len(head) and reply.gate is not None and reply.gate_at == "after_text":
                await reply.gate.wait()
            if index and reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def tool_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``role: tool`` messages of a recorded request body."""
    return [m for m in body["messages"] if m.get("role") == "tool"]


def tool_names(body: Mapping[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools", [])]


@dataclass
class GameCall:
    npc: str
    cap: str
    args: dict[str, Any]
    mode: str
    timeout_s: float | None


@dataclass
class FakeLink:
    """An in-process GameLink for session tests without a bridge: records everything and
    answers calls with ``handler`` (an async function of the call)."""

    handler: Callable[[GameCall], Any] | None = None
    calls: list[GameCall] = field(default_factory=list)
    said: list[tuple[str, str]] = field(default_factory=list)
    ends: list[tuple[str, str]] = field(default_factory=list)
    states: list[str] = field(default_factory=list)

    async def call(
        self,
        npc: str,
        cap: str,
        args: Mapping[str, Any] | None = None,
        *,
        mode: Literal["call", "fire"] = "call",
        timeout_s: float | None = None,
        idempotent: bool = False,
    ) -> Any:
        record = GameCall(npc, cap, dict(args or {}), mode, timeout_s)
        self.calls.append(record)
        if self.handler is None:
            return {"ok": True}
        result = self.handler(record)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    def say(self, npc: str, stream: str, text: str) -> bool:
        self.said.append((stream, text))
        return True

    def say_end(self, npc: str, stream: str, reason: str = "done") -> bool:
        self.ends.append((stream, reason))
        return True

    def status(self, npc: str, state: Any) -> bool:
        self.states.append(str(state))
        return True


_NPC_TOML = """\
[project]
name = "testing"

[capabilities]
python = ["capabilities/mind.py"]

[model]
base_url = "offline"
model = "offline"
max_retries = 0

[limits]
steps_per_turn = {steps}
history_messages = {history}
history_tokens = 6000
tool_retries = 2
"""

_CAPS_TOML = """\
[[capability]]
name = "goToLocation"
description = "Walk to a point on the ground plane."
mode = "call"
executor = "game"
timeout_s = 5
idempotent = true
[capability.parameters]
type = "object"
required = ["x", "z"]
properties.x = { type = "number", minimum = -1000, maximum = 1000 }
properties.z = { type = "number", minimum = -1000, maximum = 1000 }

[[capability]]
name = "openGate"
description = "Open the gate."
mode = "call"
executor = "game"
timeout_s = 5
idempotent = true
[capability.parameters]
type = "object"
properties = {}

[[capability]]
name = "slowAction"
description = "Something the game takes too long to do."
mode = "call"
executor = "game"
timeout_s = 0.3
idempotent = false
[capability.parameters]
type = "object"
properties = {}

[[capability]]
name = "pickUp"
description = "Pick up an item (not idempotent)."
mode = "call"
executor = "game"
timeout_s = 5
idempotent = false
[capability.parameters]
type = "object"
required = ["item"]
properties.item = { type = "string", minLength = 1 }

[[capability]]
name = "shout"
description = "Shout something; nobody waits for it."
mode = "fire"
executor = "game"
timeout_s = 5
idempotent = true
[capability.parameters]
type = "object"
required = ["text"]
properties.text = { type = "string" }
"""

_MIND_PY = '''\
"""Runtime-executed capabilities of the test project."""

from __future__ import annotations

from typing import Any

from capabilities import CapabilityContext, capability


@capability(executor="runtime", timeout_s=5)
async def remember(ctx: CapabilityContext, fact: str) -> dict[str, Any]:
    """Store a fact.

    Args:
        fact: The fact.
    """
    await ctx.memory.remember(fact)
    return {"remembered": fact}


@capability(executor="runtime", timeout_s=5)
async def recall(ctx: CapabilityContext, topic: str) -> dict[str, Any]:
    """Look a topic up.

    Args:
        topic: The topic.
    """
    return {"facts": await ctx.memory.recall(topic)}


@capability(executor="runtime", timeout_s=5)
async def walkHome(ctx: CapabilityContext) -> Any:
    """Walk home: a runtime capability that calls a game capability."""
    return await ctx.game.call("goToLocation", {"x": 1, "z": 2})
'''

_CHARACTER = """\
id = "{id}"
name = "{name}"
persona = "A test character."
goals = ["Pass the tests."]
knowledge = ["The password is oak."]
capabilities = {caps}
triggers = ["heard"]
"""

ALL_CAPS = [
    "goToLocation",
    "openGate",
    "slowAction",
    "pickUp",
    "shout",
    "remember",
    "recall",
    "walkHome",
]


def make_project(root: Any, *, steps: int = 4, history: int = 40) -> Any:
    """Write and load a small project: characters ``tester`` (every capability) and
    ``helper`` (goToLocation, openGate)."""
    from pathlib import Path

    from runtime.project import load_project

    root = Path(root)
    (root / "capabilities").mkdir(parents=True, exist_ok=True)
    (root / "characters").mkdir(exist_ok=True)
    (root / "npc.toml").write_text(_NPC_TOML.format(steps=steps, history=history))
    (root / "capabilities" / "testing.toml").write_text(_CAPS_TOML)
    (root / "capabilities" / "mind.py").write_text(_MIND_PY)
    for cid, name, caps in (
        ("tester", "Tess", ALL_CAPS),
        ("helper", "Hal", ["goToLocation", "openGate"]),
    ):
        (root / "characters" / f"{cid}.toml").write_text(
            _CHARACTER.format(id=cid, name=name, caps=json.dumps(caps))
        )
    return load_project(root)


async def eventually(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait until ``predicate()`` holds (polled): for state that has no event of its own."""
    async with asyncio.timeout(timeout_s):
        for _ in itertools.count():
            if predicate():
                return
            await asyncio.sleep(0.005)
