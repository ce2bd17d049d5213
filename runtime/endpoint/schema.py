"""The request body of ``POST /v1/chat/completions``: parsing, validation, and the wire form the
turn loop needs.

Sans-I/O: bytes in, a frozen :class:`ChatRequest` out, or :class:`InvalidRequest` naming the
field (``messages[2].tool_call_id``) in OpenAI's words. Pydantic does the checking, but its
errors never reach a client as such: only the field path and a one-line reason do.

Messages are validated one by one against the model of their role rather than as a
discriminated union, so that error paths are the client's own (``messages[1].content``) and not
pydantic's (``messages.1.user.content``). Fields the endpoint does not use (``n`` apart,
``user``, ``seed``, ``tool_choice``, ...) are accepted and ignored, as OpenAI-compatible servers
commonly do, so that SDK defaults never break a request.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from runtime.endpoint.errors import InvalidRequest

__all__ = [
    "AssistantMessage",
    "ChatRequest",
    "ClientTool",
    "StreamOptions",
    "ToolMessage",
    "UserMessage",
    "parse_request",
]

_TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"
_MAX_MESSAGES = 10_000


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore", allow_inf_nan=False)


class TextPart(_Model):
    type: Literal["text"]
    text: str


Content = str | list[TextPart]


def _text(content: Content | None) -> str | None:
    if content is None or isinstance(content, str):
        return content
    return "".join(part.text for part in content)


class SystemMessage(_Model):
    role: Literal["system", "developer"]
    content: Content


class UserMessage(_Model):
    role: Literal["user"]
    content: Content

    def wire(self) -> dict[str, Any]:
        return {"role": "user", "content": _text(self.content)}


class FunctionCall(_Model):
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    arguments: str


class AssistantToolCall(_Model):
    id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(_Model):
    role: Literal["assistant"]
    content: Content | None = None
    tool_calls: list[AssistantToolCall] | None = None

    def wire(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": _text(self.content)}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
                for call in self.tool_calls
            ]
        return message


class ToolMessage(_Model):
    role: Literal["tool"]
    tool_call_id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    content: Content

    def wire(self) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": self.tool_call_id, "content": _text(self.content)}


_ROLES: dict[str, type[_Model]] = {
    "system": SystemMessage,
    "developer": SystemMessage,
    "user": UserMessage,
    "assistant": AssistantMessage,
    "tool": ToolMessage,
}


class FunctionDefinition(_Model):
    name: Annotated[str, StringConstraints(pattern=_TOOL_NAME)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ClientTool(_Model):
    type: Literal["function"]
    function: FunctionDefinition

    def wire(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.function.name}
        if self.function.description is not None:
            function["description"] = self.function.description
        function["parameters"] = (
            self.function.parameters
            if self.function.parameters is not None
            else {"type": "object", "properties": {}}
        )
        if self.function.strict is not None:
            function["strict"] = self.function.strict
        return {"type": "function", "function": function}


class StreamOptions(_Model):
    include_usage: bool = False


class _Body(_Model):
    """The top level; ``messages`` are checked per role afterwards (see the module docstring)."""

    model: str | None = None
    character_id: str | None = None
    messages: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=_MAX_MESSAGES)]
    stream: bool = True
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    tools: list[ClientTool] | None = None
    n: Annotated[int, Field(ge=1, le=1)] | None = None


Message = UserMessage | AssistantMessage | ToolMessage


class ChatRequest(BaseModel):
    """A valid request, with the system messages already dropped."""

    model_config = ConfigDict(frozen=True)

    character: str
    """The character id (``character_id`` when given, else ``model``)."""
    character_field: Literal["model", "character_id"]
    messages: tuple[Message, ...]
    stream: bool
    include_usage: bool
    sampling: dict[str, Any]
    """temperature, top_p, max_tokens, stop, frequency_penalty: only those the client set."""
    tools: tuple[ClientTool, ...]

    def history(self) -> list[dict[str, Any]]:
        """The conversation in chat-completions wire form, for the turn loop."""
        return [message.wire() for message in self.messages]


def parse_request(body: bytes) -> ChatRequest:
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise InvalidRequest(
            "We could not parse the JSON body of your request. "
            "The body must be a JSON object (Content-Type: application/json).",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    try:
        top = _Body.model_validate(data)
    except pydantic.ValidationError as exc:
        raise _invalid(exc, ()) from None
    messages = _messages(top.messages)
    if not messages:
        raise InvalidRequest(
            "'messages' must contain at least one user, assistant or tool message "
            "(system messages are ignored: the character's own prompt is used).",
            param="messages",
            code="invalid_value",
        )
    _check_tool_results(top.messages, messages)
    tools = tuple(top.tools or ())
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        if tool.function.name in seen:
            raise InvalidRequest(
                f"Invalid value for 'tools[{index}].function.name': "
                f"{tool.function.name!r} is already the name of another tool.",
                param=f"tools[{index}].function.name",
                code="invalid_value",
            )
        seen.add(tool.function.name)
    if top.character_id is not None:
        character, field = top.character_id, "character_id"
    elif top.model is not None:
        character, field = top.model, "model"
    else:
        raise InvalidRequest(
            "Missing required parameter: 'model' (the character id).",
            param="model",
            code="missing_required_parameter",
        )
    sampling: dict[str, Any] = {}
    for key in ("temperature", "top_p", "max_tokens", "stop", "frequency_penalty"):
        value = getattr(top, key)
        if value is not None:
            sampling[key] = value
    if top.max_completion_tokens is not None:
        sampling["max_tokens"] = top.max_completion_tokens
    return ChatRequest(
        character=character,
        character_field=field,
        messages=tuple(messages),
        stream=top.stream,
        include_usage=top.stream_options is not None and top.stream_options.include_usage,
        sampling=sampling,
        tools=tools,
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _messages(raw: Sequence[dict[str, Any]]) -> list[Message]:
    out: list[Message] = []
    for index, item in enumerate(raw):
        role = item.get("role")
        model = _ROLES.get(role) if isinstance(role, str) else None
        if model is None:
            raise InvalidRequest(
                f"Invalid value for 'messages[{index}].role': expected one of 'system', "
                "'developer', 'user', 'assistant', 'tool'.",
                param=f"messages[{index}].role",
                code="invalid_value",
            )
        try:
            message = model.model_validate(item)
        except pydantic.ValidationError as exc:
            raise _invalid(exc, ("messages", index)) from None
        if isinstance(message, UserMessage | AssistantMessage | ToolMessage):
            out.append(message)
    return out


def _check_tool_results(raw: Sequence[dict[str, Any]], messages: Sequence[Message]) -> None:
    """A tool result must answer a call of an earlier assistant message: providers reject
    anything else, and a 400 naming the field is more useful than an upstream 502."""
    called: set[str] = set()
    positions = [i for i, item in enumerate(raw) if item.get("role") not in ("system", "developer")]
    for position, message in zip(positions, messages, strict=True):
        if isinstance(message, AssistantMessage):
            called.update(call.id for call in message.tool_calls or ())
        elif isinstance(message, ToolMessage) and message.tool_call_id not in called:
            raise InvalidRequest(
                f"Invalid value for 'messages[{position}].tool_call_id': "
                f"{message.tool_call_id!r} does not answer a tool call of an earlier "
                "assistant message.",
                param=f"messages[{position}].tool_call_id",
                code="invalid_value",
            )


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "TextPart"})


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or "-" in part or part in _TYPE_TAGS:
            # A union member pydantic names in its paths (``str``, ``list[TextPart]``); field
            # names never contain brackets or dashes, and none is a type name.
            continue
        else:
            out += f".{part}" if out else part
    return out


def _invalid(exc: pydantic.ValidationError, prefix: tuple[int | str, ...]) -> InvalidRequest:
    """The first error, as OpenAI words it. Pydantic's text is reduced to its one-line reason
    (no input echo, no URL, no model names)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    # Of a union's errors, prefer the member the value got furthest into: the longest path,
    # then a constraint error (too long, too big) over "not this type".
    error = max(errors, key=lambda e: (len(e["loc"]), not e["type"].endswith("_type")))
    param = _path((*prefix, *error["loc"])) or None
    kind = error["type"]
    reason = str(error["msg"])
    if kind == "missing":
        return InvalidRequest(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    if kind.endswith(("_type", "_parsing")):
        return InvalidRequest(
            f"Invalid type for '{param}': {_lower(reason)}.", param=param, code="invalid_type"
        )
    return InvalidRequest(
        f"Invalid value for '{param}': {_lower(reason)}.", param=param, code="invalid_value"
    )


def _lower(text: str) -> str:
    text = text.rstrip(".")
    return text[:1].lower() + text[1:] if text else "invalid"
