"""The endpoint's answers in OpenAI's exact shapes: a ``chat.completion`` body, and the SSE
``chat.completion.chunk`` events of a stream.

Sans-I/O. The field order and the nulls (``refusal``, ``logprobs``, ``system_fingerprint``)
follow OpenAI's own responses, because clients written against OpenAI sometimes read them
without ``.get``. The parts of a chunk that never change within a completion (id, created,
model) are encoded once per stream: per text delta only the delta is serialised.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runtime.completions import ToolCall

__all__ = ["DONE", "ChunkRenderer", "Usage", "completion_body", "new_completion_id", "sse"]

DONE = b"data: [DONE]\n\n"
ARGUMENT_FRAGMENT = 32
"""Characters of tool-call arguments per chunk, as providers split them."""

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def new_completion_id() -> str:
    return "chatcmpl-" + "".join(secrets.choice(_ALPHABET) for _ in range(29))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def sse(payload: Any) -> bytes:
    return b"data: " + _dumps(payload).encode() + b"\n\n"


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def _tool_calls(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    return [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for call in calls
    ]


def completion_body(
    *,
    completion_id: str,
    created: int,
    model: str,
    content: str | None,
    tool_calls: Sequence[ToolCall],
    finish_reason: str,
    usage: Usage,
) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = _tool_calls(tool_calls)
    return _dumps(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": usage.to_dict(),
            "system_fingerprint": None,
        }
    ).encode()


class ChunkRenderer:
    """The SSE events of one streamed completion, in order:
    :meth:`role` once, :meth:`content` per text delta, :meth:`tool_calls`, :meth:`finish`,
    :meth:`usage` (only when the client asked with ``stream_options.include_usage``), then
    :data:`DONE`. With ``include_usage`` every other chunk carries ``"usage": null``, as
    OpenAI's do."""

    def __init__(
        self, completion_id: str, created: int, model: str, *, include_usage: bool
    ) -> None:
        head = (
            f'data: {{"id":{_dumps(completion_id)},"object":"chat.completion.chunk",'
            f'"created":{created},"model":{_dumps(model)},"system_fingerprint":null,'
        ).encode()
        self._head = head
        self._pre = head + b'"choices":[{"index":0,"delta":'
        tail = b',"logprobs":null,"finish_reason":null}]'
        self._tail = tail + (b',"usage":null' if include_usage else b"") + b"}\n\n"
        self._usage_null = b',"usage":null' if include_usage else b""

    def role(self, *, tool_calls_only: bool = False) -> bytes:
        """``content`` is ``null`` when the answer is known to be only tool calls, as OpenAI
        sends it (the SDK's stream helper then accumulates ``content: None``, not ``""``)."""
        delta = b'{"role":"assistant","content":%s,"refusal":null}' % (
            b"null" if tool_calls_only else b'""'
        )
        return self._pre + delta + self._tail

    def content(self, text: str) -> bytes:
        return self._pre + b'{"content":' + _dumps(text).encode() + b"}" + self._tail

    def tool_calls(self, calls: Sequence[ToolCall]) -> list[bytes]:
        """Each call as providers stream it: index, id, type and name with empty arguments
        first, then the arguments in fragments."""
        out: list[bytes] = []
        for index, call in enumerate(calls):
            first = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            out.append(self._pre + b'{"tool_calls":[' + _dumps(first).encode() + b"]}" + self._tail)
            arguments = call.arguments
            for start in range(0, len(arguments), ARGUMENT_FRAGMENT):
                fragment = {
                    "index": index,
                    "function": {"arguments": arguments[start : start + ARGUMENT_FRAGMENT]},
                }
                out.append(
                    self._pre + b'{"tool_calls":[' + _dumps(fragment).encode() + b"]}" + self._tail
                )
        return out

    def finish(self, finish_reason: str) -> bytes:
        return (
            self._pre
            + b'{},"logprobs":null,"finish_reason":'
            + _dumps(finish_reason).encode()
            + b"}]"
            + self._usage_null
            + b"}\n\n"
        )

    def usage(self, usage: Usage) -> bytes:
        return self._head + b'"choices":[],"usage":' + _dumps(usage.to_dict()).encode() + b"}\n\n"
