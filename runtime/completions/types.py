"""What the completions client hands out: stream events and the assembled completion.

Frozen slotted dataclasses, not pydantic models: they are built on the hot path (one per text
delta) from values the assembler has already type-checked, so validating them again would only
cost time. Every event names its ``choice`` so ``n > 1`` streams stay unambiguous.

The assembled :class:`Completion` is the same whether the answer was streamed or not.
A :class:`Choice` with tool calls means "run them", whatever its ``finish_reason`` says (some
providers finish tool calls with ``"stop"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Choice",
    "ChoiceFinished",
    "Completion",
    "ReasoningDelta",
    "RefusalDelta",
    "StreamEvent",
    "TextDelta",
    "ToolCall",
    "ToolCallArgumentsDelta",
    "ToolCallFinished",
    "ToolCallStarted",
    "Usage",
    "UsageReported",
]


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # the JSON text exactly as the model produced it (may be invalid JSON)

    def to_wire(self) -> dict[str, Any]:
        """The ``tool_calls`` entry to put in the assistant message of the next request."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    raw: dict[str, Any] = field(default_factory=dict, hash=False)  # provider extras, as sent

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> Usage:
        """Lenient: a provider that omits or mistypes a count gets 0 there, never a crash."""

        def count(key: str) -> int:
            value = raw.get(key)
            return value if type(value) is int else 0

        return cls(count("prompt_tokens"), count("completion_tokens"), count("total_tokens"), raw)


@dataclass(frozen=True, slots=True)
class Choice:
    index: int
    finish_reason: str | None
    content: str | None  # None when the model produced no text at all
    refusal: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str | None = None  # `reasoning` / `reasoning_content` deltas (Groq, DeepSeek, ...)

    def to_message(self) -> dict[str, Any]:
        """This choice as the assistant message to append to the history (wire form)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.to_wire() for call in self.tool_calls]
        return message

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "finish_reason": self.finish_reason,
            "content": self.content,
            "refusal": self.refusal,
            "tool_calls": [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.tool_calls
            ],
        }


@dataclass(frozen=True, slots=True)
class Completion:
    id: str
    model: str
    choices: tuple[Choice, ...]
    usage: Usage | None = None

    @property
    def choice(self) -> Choice:
        """The first choice (the only one unless the request asked for ``n > 1``)."""
        if not self.choices:
            raise LookupError("the completion has no choices")
        return self.choices[0]

    def to_dict(self) -> dict[str, Any]:
        """The shape of ``shared/vectors/openai-recorded/expected.json`` (and `npc complete`)."""
        return {
            "model": self.model,
            "choices": [c.to_dict() for c in self.choices],
            "usage": self.usage.raw if self.usage is not None else None,
        }


# --- stream events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    choice: int
    text: str


@dataclass(frozen=True, slots=True)
class RefusalDelta:
    choice: int
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    choice: int
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    """The call's name is known; ``id`` is the provider's, or generated when it sent none."""

    choice: int
    index: int  # position of the call within its choice (0, 1, ...), not the provider's index
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallArgumentsDelta:
    choice: int
    index: int
    id: str
    delta: str


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    """Emitted when the choice finishes (or the stream ends), never earlier: providers may
    interleave fragments of parallel calls, so "the next call started" proves nothing."""

    choice: int
    index: int
    id: str
    name: str
    arguments: str

    def to_tool_call(self) -> ToolCall:
        return ToolCall(self.id, self.name, self.arguments)


@dataclass(frozen=True, slots=True)
class UsageReported:
    usage: Usage


@dataclass(frozen=True, slots=True)
class ChoiceFinished:
    choice: int
    finish_reason: str


StreamEvent = (
    TextDelta
    | RefusalDelta
    | ReasoningDelta
    | ToolCallStarted
    | ToolCallArgumentsDelta
    | ToolCallFinished
    | UsageReported
    | ChoiceFinished
)
