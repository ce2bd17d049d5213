"""Turning a reply into the exact bytes OpenAI sends: SSE events or a JSON body.

Sans-I/O. The stream layout follows recorded gpt-4o traffic (../shared/vectors): a role chunk,
content chunks (one per word), tool-call fragments (index, id, type and name only in the first
fragment of each call, arguments split over several fragments), a chunk with an empty delta and
the finish_reason, a usage chunk with ``choices: []`` when ``stream_options.include_usage``, then
``data: [DONE]``. Everything that is the same in every chunk of a completion is encoded once;
per chunk only the delta is serialised, which keeps a whole stream in the tens of microseconds.

Usage numbers are approximations, not a tokenizer: prompt tokens = request body bytes // 4,
completion tokens = generated characters (text, tool names, arguments) // 4, at least 1.
"""

from __future__ import annotations

import json
import re
from typing import Any

from runtime.offline.policy import Reply, ToolCall

__all__ = [
    "ARGUMENT_FRAGMENT",
    "completion_body",
    "error_body",
    "stream_error_event",
    "stream_events",
    "usage",
]

ARGUMENT_FRAGMENT = 12  # characters of arguments per fragment (at least two fragments)
_WORD_RE = re.compile(r"\s*\S+\s*$|\s*\S+")
_DONE = b"data: [DONE]\n\n"
_NULL_TAIL = b',"logprobs":null,"finish_reason":null}]}\n\n'


# One encoder for all: json.dumps with non-default options builds a new encoder per call,
# which was a fifth of a stream's cost.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def usage(prompt_tokens: int, reply: Reply) -> dict[str, Any]:
    chars = len(reply.content or "")
    for call in reply.tool_calls:
        chars += len(call.name) + len(call.arguments)
    completion = max(1, chars // 4)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _split_words(text: str) -> list[str]:
    # Each piece carries its leading whitespace, as tokenizers emit " word".
    pieces = _WORD_RE.findall(text)
    return pieces if "".join(pieces) == text else [text]


def _split_arguments(arguments: str) -> list[str]:
    if len(arguments) <= 1:
        return [arguments]
    size = min(ARGUMENT_FRAGMENT, (len(arguments) + 1) // 2)
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


def stream_events(
    reply: Reply,
    *,
    completion_id: str,
    model: str,
    created: int,
    prompt_tokens: int,
    include_usage: bool,
) -> list[bytes]:
    """The SSE events of a streamed completion, ``[DONE]`` included, one bytes per event."""
    head = (
        f'data: {{"id":{_dumps(completion_id)},"object":"chat.completion.chunk",'
        f'"created":{created},"model":{_dumps(model)},"system_fingerprint":null,'
    ).encode()
    pre = head + b'"choices":[{"index":0,"delta":'
    events: list[bytes] = []
    if reply.content is None and reply.tool_calls:
        role = b'{"role":"assistant","content":null,"refusal":null}'
    else:
        role = b'{"role":"assistant","content":"","refusal":null}'
    events.append(pre + role + _NULL_TAIL)
    if reply.content:
        for piece in _split_words(reply.content):
            delta = b'{"content":' + _dumps(piece).encode() + b"}"
            events.append(pre + delta + _NULL_TAIL)
    for index, call in enumerate(reply.tool_calls):
        events.extend(_call_events(pre, index, call))
    finish = _dumps(reply.finish_reason).encode()
    events.append(pre + b'{},"logprobs":null,"finish_reason":' + finish + b"}]}\n\n")
    if include_usage:
        body = _dumps(usage(prompt_tokens, reply)).encode()
        events.append(head + b'"choices":[],"usage":' + body + b"}\n\n")
    events.append(_DONE)
    return events


def _call_events(pre: bytes, index: int, call: ToolCall) -> list[bytes]:
    first: dict[str, Any] = {"index": index}
    if call.id is not None:
        first["id"] = call.id
    first["type"] = "function"
    first["function"] = {"name": call.name, "arguments": ""}
    out = [pre + b'{"tool_calls":[' + _dumps(first).encode() + b"]}" + _NULL_TAIL]
    prefix = b'{"tool_calls":[{"index":' + str(index).encode() + b',"function":{"arguments":'
    for fragment in _split_arguments(call.arguments):
        out.append(pre + prefix + _dumps(fragment).encode() + b"}}]}" + _NULL_TAIL)
    return out


def stream_error_event(message: str, code: str) -> bytes:
    """A mid-stream failure as providers send it after a 200 (an SSE ``error`` event)."""
    payload = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
    return b"event: error\ndata: " + _dumps(payload).encode() + b"\n\n"


def completion_body(
    reply: Reply,
    *,
    completion_id: str,
    model: str,
    created: int,
    prompt_tokens: int,
) -> bytes:
    """The JSON body of a non-streamed completion."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.content,
        "refusal": None,
        "annotations": [],
    }
    if reply.tool_calls:
        calls = []
        for call in reply.tool_calls:
            entry: dict[str, Any] = {}
            if call.id is not None:
                entry["id"] = call.id
            entry["type"] = "function"
            entry["function"] = {"name": call.name, "arguments": call.arguments}
            calls.append(entry)
        message["tool_calls"] = calls
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}
        ],
        "usage": usage(prompt_tokens, reply),
        "system_fingerprint": None,
    }
    return _dumps(body).encode()


def error_body(
    message: str, kind: str, *, param: str | None = None, code: str | None = None
) -> bytes:
    """An error in OpenAI's shape."""
    return _dumps(
        {"error": {"message": message, "type": kind, "param": param, "code": code}}
    ).encode()
