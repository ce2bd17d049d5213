"""Test support for the offline model: an independent minimal SSE parse, and a tiny turn loop.

The parse is written from the SSE spec and OpenAI's documented chunk shapes, not from the
model's renderer, so the renderer cannot agree with itself by construction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx2

from runtime.offline import OfflineCharacter, offline_characters
from runtime.project import Project, load_project

REPO = Path(__file__).resolve().parents[3]
VILLAGE = REPO / "samples" / "village"


@cache
def village() -> Project:
    return load_project(VILLAGE)


def village_characters() -> dict[str, OfflineCharacter]:
    return offline_characters(village())


def tools_for(character_id: str) -> list[dict[str, Any]]:
    return village().tools_for(character_id).openai_tools()


def sse_events(raw: bytes) -> list[tuple[str, str]]:
    """(event name, data) per SSE event; comments skipped, multi-line data joined."""
    events: list[tuple[str, str]] = []
    name, data = "message", list[str]()
    for line in raw.decode("utf-8").split("\n"):
        if line == "":
            if data:
                events.append((name, "\n".join(data)))
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "data":
                data.append(value)
            elif key == "event":
                name = value
    return events


@dataclass
class Assembled:
    content: str | None = None
    tool_calls: list[tuple[str | None, str, str]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    done: bool = False
    role_first: bool = False


def assemble_stream(raw: bytes) -> Assembled:
    out = Assembled()
    calls: dict[int, list[Any]] = {}
    for index, (name, data) in enumerate(sse_events(raw)):
        if data == "[DONE]":
            out.done = True
            continue
        payload = json.loads(data)
        if name == "error":
            out.error = payload["error"]
            continue
        if payload.get("usage"):
            out.usage = payload["usage"]
        for choice in payload["choices"]:
            delta = choice["delta"]
            if index == 0 and delta.get("role") == "assistant":
                out.role_first = True
            if delta.get("content"):
                out.content = (out.content or "") + delta["content"]
            for call in delta.get("tool_calls") or ():
                slot = calls.setdefault(call["index"], [None, "", ""])
                slot[0] = call.get("id", slot[0])
                fn = call.get("function", {})
                slot[1] += fn.get("name") or ""
                slot[2] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                out.finish_reason = choice["finish_reason"]
    out.tool_calls = [tuple(calls[i]) for i in sorted(calls)]
    return out


def assemble_json(body: bytes) -> Assembled:
    payload = json.loads(body)
    choice = payload["choices"][0]
    message = choice["message"]
    calls = [
        (c.get("id"), c["function"]["name"], c["function"]["arguments"])
        for c in message.get("tool_calls") or ()
    ]
    return Assembled(
        content=message.get("content"),
        tool_calls=calls,
        finish_reason=choice["finish_reason"],
        usage=payload.get("usage"),
        done=True,
        role_first=message.get("role") == "assistant",
    )


def tool_result(name: str, arguments: str, offered: set[str]) -> str:
    """What a game would answer: errors for the faults the misbehaviour knob produces."""
    if name not in offered:
        return json.dumps({"error": {"code": "UNKNOWN_CAPABILITY", "message": f"no {name}"}})
    try:
        json.loads(arguments)
    except ValueError:
        return json.dumps({"error": {"code": "BAD_INPUT", "message": "arguments are not JSON"}})
    return json.dumps({"ok": True})


async def play(
    client: httpx2.AsyncClient,
    model: str,
    perceptions: list[str],
    *,
    stream: bool = True,
    max_steps: int = 6,
    max_attempts: int = 8,
) -> list[str]:
    """A minimal turn loop; returns a transcript (one line per observable thing)."""
    tools = tools_for(model) if model in village().characters else []
    offered = {t["function"]["name"] for t in tools}
    messages: list[dict[str, Any]] = []
    transcript: list[str] = []
    for perception in perceptions:
        messages.append({"role": "user", "content": perception})
        transcript.append(f"user: {perception}")
        for _ in range(max_steps):
            body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
            if tools:
                body["tools"] = tools
            if stream:
                body["stream_options"] = {"include_usage": True}
            for _attempt in range(max_attempts):
                response = await client.post("chat/completions", json=body)
                if response.status_code != 200:
                    retry = response.headers.get("retry-after")
                    transcript.append(f"http {response.status_code} retry-after={retry}")
                    continue
                result = (assemble_stream if stream else assemble_json)(response.content)
                if result.error is not None:
                    transcript.append(f"stream error {result.error['code']}")
                    continue
                break
            else:
                transcript.append("gave up")
                return transcript
            assistant: dict[str, Any] = {"role": "assistant", "content": result.content}
            if result.content:
                transcript.append(f"say: {result.content}")
            if not result.tool_calls:
                messages.append(assistant)
                break
            ids = [
                cid or f"call_assigned_{len(messages)}_{i}"
                for i, (cid, _, _) in enumerate(result.tool_calls)
            ]
            assistant["tool_calls"] = [
                {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                for cid, (_, name, args) in zip(ids, result.tool_calls, strict=True)
            ]
            messages.append(assistant)
            for cid, (_, name, args) in zip(ids, result.tool_calls, strict=True):
                content = tool_result(name, args, offered)
                transcript.append(f"call: {name} {args} -> {content}")
                messages.append({"role": "tool", "tool_call_id": cid, "content": content})
    return transcript
