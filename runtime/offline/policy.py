"""The offline model's mind: given a conversation and the offered tools, what to answer.

Sans-I/O and deterministic: the caller passes a ``random.Random`` seeded from the model's seed
and a stable digest of the conversation, so the same seed and conversation always give the same
reply. Order of decisions (documented for designers in docs and `runtime.offline`):

1. the latest message is a tool result → acknowledge in one sentence and never call again, so
   every turn ends (a rule's ``after_result`` line when the call came from that rule and
   succeeded);
2. a designer rule whose phrases occur in the latest user message → its ``call`` (when the
   request offers that tool) and/or its ``say``;
3. otherwise a seeded choice between a short in-character line and a call of one of the
   offered tools with arguments drawn from its JSON Schema.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.offline.character import OfflineCharacter, OfflineRule
from runtime.offline.schema_args import generate_arguments

__all__ = ["Reply", "ToolCall", "decide", "message_text"]

_GENERIC_LINES = (
    "Hello there.",
    "Good day to you.",
    "Hm. Tell me more.",
    "I have nothing to add to that.",
    "Let me think about it.",
    "Is that so?",
)
_QUOTE_MAX = 40
_ERROR_MAX = 80


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call of a reply. ``id`` None only when misbehaving (a missing id)."""

    id: str | None
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Reply:
    """What the model answers: text, tool calls, or both (text first, as providers stream it)."""

    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = "stop"


def decide(
    character: OfflineCharacter | None,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]],
    rng: random.Random,
    *,
    tool_choice: Any = None,
    call_rate: float = 0.5,
    max_tokens: int | None = None,
) -> Reply:
    """The reply to ``messages`` (OpenAI chat format, already shape-checked by the app)."""
    offered = _tool_index(tools)
    if tool_choice == "none":
        offered = {}
    last = messages[-1]
    if last.get("role") == "tool":
        return _limit(_acknowledge(character, messages), max_tokens)

    text = message_text(last) if last.get("role") == "user" else ""
    forced = _forced_tool(tool_choice, offered)
    rule = character.first_rule(text) if character is not None and text else None
    if rule is not None and forced is None:
        reply = _apply_rule(rule, offered, rng)
        if reply is not None:
            if tool_choice == "required" and not reply.tool_calls and offered:
                name = rng.choice(sorted(offered))
                call = _generic_call(character, offered[name], name, rng, text)
                return Reply(reply.content, (call,), "tool_calls")
            return reply if reply.tool_calls else _limit(reply, max_tokens)

    if forced is not None:
        return Reply(
            None, (_generic_call(character, offered[forced], forced, rng, text),), "tool_calls"
        )
    must_call = tool_choice == "required"
    if offered and (must_call or rng.random() < call_rate):
        name = rng.choice(sorted(offered))
        return Reply(
            None, (_generic_call(character, offered[name], name, rng, text),), "tool_calls"
        )
    return _limit(Reply(in_character_line(character, rng, text)), max_tokens)


# -- rules ----------------------------------------------------------------------------------


def _apply_rule(
    rule: OfflineRule, offered: Mapping[str, Mapping[str, Any]], rng: random.Random
) -> Reply | None:
    if rule.call is not None and rule.call in offered:
        args = json.dumps(rule.args, ensure_ascii=False, separators=(",", ":"))
        return Reply(rule.say, (ToolCall(_call_id(rng), rule.call, args),), "tool_calls")
    if rule.say is not None:
        return Reply(rule.say)
    return None


def _rule_for_call(
    character: OfflineCharacter,
    messages: Sequence[Mapping[str, Any]],
    assistant_index: int,
    tool_name: str,
) -> OfflineRule | None:
    """The rule that made the assistant message at ``assistant_index`` call ``tool_name``.

    Re-derived from the conversation (the user message right before that assistant turn)
    rather than encoded in call ids, so it holds even when the runtime rewrites or supplies ids.
    """
    for j in range(assistant_index - 1, -1, -1):
        role = messages[j].get("role")
        if role in ("system", "developer"):
            continue
        if role != "user":
            return None
        rule = character.first_rule(message_text(messages[j]))
        if rule is not None and rule.call == tool_name:
            return rule
        return None
    return None


# -- after a tool result --------------------------------------------------------------------


def _acknowledge(
    character: OfflineCharacter | None, messages: Sequence[Mapping[str, Any]]
) -> Reply:
    results: list[Mapping[str, Any]] = []
    i = len(messages) - 1
    while i >= 0 and messages[i].get("role") == "tool":
        results.append(messages[i])
        i -= 1
    results.reverse()
    calls: dict[str, tuple[int, str]] = {}
    if i >= 0 and messages[i].get("role") == "assistant":
        for call in messages[i].get("tool_calls") or ():
            if isinstance(call, Mapping):
                fn = call.get("function")
                name = fn.get("name") if isinstance(fn, Mapping) else None
                call_id = call.get("id")
                if isinstance(call_id, str) and isinstance(name, str):
                    calls[call_id] = (i, name)

    succeeded: list[str] = []
    failed: list[tuple[str, str]] = []
    rule_lines: list[str] = []
    for result in results:
        call_id = result.get("tool_call_id")
        index, name = calls.get(call_id, (-1, "that")) if isinstance(call_id, str) else (-1, "that")
        error = _error_of(message_text(result))
        if error is not None:
            failed.append((name, error))
            continue
        succeeded.append(name)
        if character is not None and index >= 0:
            rule = _rule_for_call(character, messages, index, name)
            if rule is not None and rule.after_result is not None:
                rule_lines.append(rule.after_result)

    if failed:
        name, error = failed[0]
        return Reply(f"That did not work: {name} failed ({error}).")
    if rule_lines:
        return Reply(" ".join(dict.fromkeys(rule_lines)))
    done = ", ".join(dict.fromkeys(succeeded)) or "that"
    return Reply(f"Done: {done} worked.")


def _error_of(content: str) -> str | None:
    """The error message of a tool result, or None when it reports success.

    The runtime sends errors as JSON objects with an ``error`` member (or ``ok: false``);
    plain-text results starting with "error" count too, for other clients.
    """
    stripped = content.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            data = None
        if isinstance(data, dict):
            error = data.get("error")
            if error:
                if isinstance(error, Mapping):
                    message = error.get("message") or error.get("code") or "error"
                    return _short(str(message))
                return _short(str(error))
            if data.get("ok") is False:
                return "failed"
            return None
    if stripped.lower().startswith("error"):
        return _short(stripped.split(":", 1)[-1].strip() or "error")
    return None


def _short(text: str) -> str:
    text = " ".join(text.split()).rstrip(".")
    return text if len(text) <= _ERROR_MAX else text[: _ERROR_MAX - 3].rstrip() + "..."


# -- the schema-driven policy ---------------------------------------------------------------


def _tool_index(tools: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    index: dict[str, Mapping[str, Any]] = {}
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            params = fn.get("parameters")
            index[fn["name"]] = params if isinstance(params, Mapping) else {"type": "object"}
    return index


def _forced_tool(tool_choice: Any, offered: Mapping[str, Any]) -> str | None:
    if isinstance(tool_choice, Mapping):
        fn = tool_choice.get("function")
        name = fn.get("name") if isinstance(fn, Mapping) else None
        if isinstance(name, str) and name in offered:
            return name
    return None


def _generic_call(
    character: OfflineCharacter | None,
    schema: Mapping[str, Any],
    name: str,
    rng: random.Random,
    heard: str,
) -> ToolCall:
    call_id = _call_id(rng)
    line = in_character_line(character, rng, heard)
    args = generate_arguments(
        schema, rng, words=character.vocabulary if character is not None else (), line=line
    )
    return ToolCall(call_id, name, json.dumps(args, ensure_ascii=False, separators=(",", ":")))


def _call_id(rng: random.Random) -> str:
    return f"call_{rng.getrandbits(96):024x}"


def in_character_line(character: OfflineCharacter | None, rng: random.Random, heard: str) -> str:
    """A short line built from the persona and knowledge (generic lines for unknown models)."""
    if character is None:
        return rng.choice(_GENERIC_LINES)
    quote = _quote(heard)
    if not quote:
        return rng.choice(character.lines)
    # The quoted reply is one more option, drawn with the same odds as each stock line.
    index = rng.randrange(len(character.lines) + 1)
    return character.lines[index] if index < len(character.lines) else f'"{quote}"? Hm.'


def _quote(heard: str) -> str:
    # Perceptions arrive as `player says: "..."`: quote what was said, not the framing.
    text = heard
    if '"' in text:
        parts = text.split('"')
        if len(parts) >= 3:
            text = parts[1]
    text = " ".join(text.split())
    if len(text) > _QUOTE_MAX:
        text = text[:_QUOTE_MAX].rsplit(" ", 1)[0] + "..."
    return text.replace('"', "'")


def _limit(reply: Reply, max_tokens: int | None) -> Reply:
    """Cut text to ``max_tokens`` (approximated as 4 characters each), like providers do."""
    if max_tokens is None or reply.content is None or reply.tool_calls:
        return reply
    budget = max(1, max_tokens) * 4
    if len(reply.content) <= budget:
        return reply
    return Reply(reply.content[:budget], (), "length")


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a message whose content is a string or a list of content parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return ""
