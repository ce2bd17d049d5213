"""Sans-I/O assembly of chat-completion chunks into typed events and a final :class:`Completion`.

Why plain dict access instead of pydantic models per chunk: a streamed answer is dozens of chunks,
and validating each into a model costs more than everything else the client does. Instead every
value the assembly depends on is type-checked where it is read (``type(x) is str``), and anything
else a provider may send is ignored. A chunk whose shape cannot be a completion chunk raises
:class:`StreamProtocolError` (naming the data line), never ``KeyError``/``TypeError``.

Provider quirks handled here (each has its own test):

- tool-call fragments without ``index``: matched by ``id`` when they carry one, else a fragment
  with a ``name`` starts a new call (unless it repeats the current call's name while that call's
  arguments are still incomplete JSON), and a bare fragment continues the current call;
- ``id``/``name`` repeated in every fragment: set, never concatenated; the same ``index`` with a
  different ``id`` is a new call (Gemini's compatibility layer numbers parallel calls all 0);
- missing or empty ``id``: one is generated (``call_`` + 24 hex digits); missing ``type`` is fine;
- arguments sent as a JSON object instead of a string: serialised once;
- tool calls finished with ``finish_reason: "stop"``: kept, the finish reason is reported as sent;
- the usage chunk with ``choices: []``, usage inside the finish chunk (Groq), ``usage: null``;
- a first chunk with ``choices: []`` (Azure's prompt filter results) and empty ``id``/``model``;
- ``n > 1`` choices interleaved; text before tool calls; ``content`` as a list of parts (Mistral);
- ``event: error`` or an ``error`` object in a chunk after HTTP 200: :class:`ProviderError`;
- a body that ends without ``[DONE]``: complete if every choice has finished, else
  :class:`StreamTruncated`; a non-JSON data line: :class:`StreamProtocolError` naming it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable

from ._sse import SSEEvent
from .errors import ProviderError, StreamProtocolError, StreamTruncated
from .types import (
    Choice,
    ChoiceFinished,
    Completion,
    ReasoningDelta,
    RefusalDelta,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallArgumentsDelta,
    ToolCallFinished,
    ToolCallStarted,
    Usage,
    UsageReported,
)

__all__ = ["StreamAssembler", "events_from_completion", "new_call_id", "parse_completion"]

_MAX_QUOTE = 200


def new_call_id() -> str:
    return "call_" + os.urandom(12).hex()


def _quote(data: str) -> str:
    return repr(data if len(data) <= _MAX_QUOTE else data[:_MAX_QUOTE] + "...")


class _Call:
    __slots__ = ("args", "finished", "generated", "id", "name", "pos", "started")

    def __init__(self, pos: int) -> None:
        self.pos = pos
        self.id = ""
        self.name = ""
        self.args: list[str] = []
        self.started = False
        self.finished = False
        self.generated = False


class _ChoiceState:
    __slots__ = (
        "by_id",
        "by_index",
        "calls",
        "finish_reason",
        "index",
        "reasoning",
        "refusal",
        "text",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.text: list[str] = []
        self.refusal: list[str] = []
        self.reasoning: list[str] = []
        self.finish_reason: str | None = None
        self.calls: list[_Call] = []
        self.by_index: dict[int, _Call] = {}
        self.by_id: dict[str, _Call] = {}


def _text_of(value: object, what: str) -> str:
    """Text of a ``content``-like field: a string, or a list of ``{"type":"text","text":...}``."""
    if type(value) is str:
        return value
    if type(value) is list:
        parts = []
        for part in value:
            if type(part) is dict and part.get("type", "text") == "text":
                text = part.get("text")
                if type(text) is str:
                    parts.append(text)
            elif type(part) is str:
                parts.append(part)
        return "".join(parts)
    raise StreamProtocolError(f"{what} is {type(value).__name__}, expected a string")


class StreamAssembler:
    """Turns decoded SSE events of one response into stream events; one instance per attempt."""

    def __init__(
        self, *, secret: str | None = None, new_id: Callable[[], str] = new_call_id
    ) -> None:
        self._secret = secret
        self._new_id = new_id
        self._choices: dict[int, _ChoiceState] = {}
        self._id = ""
        self._model = ""
        self._usage: Usage | None = None
        self.done = False  # `data: [DONE]` seen
        self._ended = False

    # -- feeding ----------------------------------------------------------------------------

    def feed(self, events: Iterable[SSEEvent], *, at_eof: bool = False) -> list[StreamEvent]:
        """Assemble the SSE events of one network read (``at_eof``: the decoder's last flush)."""
        out: list[StreamEvent] = []
        for event in events:
            if self.done:
                continue
            data = event.data
            if event.event != "message":
                if event.event == "error":
                    raise ProviderError.from_payload(self._loads_error(data), self._secret)
                continue  # `ping` and other named events carry nothing for us
            if data == "[DONE]":
                self.done = True
                continue
            try:
                chunk = json.loads(data)
            except ValueError:
                if at_eof:
                    raise StreamTruncated(
                        f"stream cut inside a data line: {_quote(data)}"
                    ) from None
                raise StreamProtocolError(f"data line is not JSON: {_quote(data)}") from None
            try:
                self._chunk(chunk, out)
            except StreamProtocolError as exc:
                raise type(exc)(f"{exc} in data line {_quote(data)}") from None
            except (TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:
                raise StreamProtocolError(
                    f"unexpected chunk shape ({exc}) in data line {_quote(data)}"
                ) from None
        return out

    def feed_chunk(self, chunk: object) -> list[StreamEvent]:
        """Assemble one already-parsed chunk (for callers that are not reading SSE)."""
        out: list[StreamEvent] = []
        self._chunk(chunk, out)
        return out

    def _loads_error(self, data: str) -> object:
        try:
            return json.loads(data)
        except ValueError:
            return data

    def _chunk(self, chunk: object, out: list[StreamEvent]) -> None:
        if type(chunk) is not dict:
            raise StreamProtocolError(f"chunk is a JSON {type(chunk).__name__}, not an object")
        error = chunk.get("error")
        if error is not None:
            raise ProviderError.from_payload(chunk, self._secret)
        if not self._id:
            cid = chunk.get("id")
            if type(cid) is str:
                self._id = cid
        if not self._model:
            model = chunk.get("model")
            if type(model) is str:
                self._model = model
        choices = chunk.get("choices")
        if choices:
            if type(choices) is not list:
                raise StreamProtocolError("`choices` is not a list")
            for raw in choices:
                self._choice(raw, out)
        usage = chunk.get("usage")
        if type(usage) is dict:
            self._usage = Usage.from_raw(usage)
            out.append(UsageReported(self._usage))

    def _choice(self, raw: object, out: list[StreamEvent]) -> None:
        if type(raw) is not dict:
            raise StreamProtocolError("a choice is not an object")
        index = raw.get("index", 0)
        if type(index) is not int:
            raise StreamProtocolError(f"choice index is {type(index).__name__}, not an integer")
        state = self._choices.get(index)
        if state is None:
            state = self._choices[index] = _ChoiceState(index)
        delta = raw.get("delta")
        if delta:
            if type(delta) is not dict:
                raise StreamProtocolError("`delta` is not an object")
            content = delta.get("content")
            if content:
                text = content if type(content) is str else _text_of(content, "content")
                if text:
                    state.text.append(text)
                    out.append(TextDelta(index, text))
            refusal = delta.get("refusal")
            if refusal:
                text = _text_of(refusal, "refusal")
                if text:
                    state.refusal.append(text)
                    out.append(RefusalDelta(index, text))
            reasoning = delta.get("reasoning") or delta.get("reasoning_content")
            if reasoning and type(reasoning) is str:
                state.reasoning.append(reasoning)
                out.append(ReasoningDelta(index, reasoning))
            calls = delta.get("tool_calls")
            if calls:
                if type(calls) is not list:
                    raise StreamProtocolError("`tool_calls` is not a list")
                for fragment in calls:
                    self._fragment(state, fragment, out)
        finish = raw.get("finish_reason")
        if finish is not None and state.finish_reason is None:
            if type(finish) is not str:
                raise StreamProtocolError("`finish_reason` is not a string")
            state.finish_reason = finish
            self._finish_calls(state, out)
            out.append(ChoiceFinished(index, finish))

    # -- tool calls ---------------------------------------------------------------------------

    def _fragment(self, state: _ChoiceState, fragment: object, out: list[StreamEvent]) -> None:
        if type(fragment) is not dict:
            raise StreamProtocolError("a tool call fragment is not an object")
        index = fragment.get("index")
        if type(index) is not int:
            index = None
        fid = fragment.get("id")
        if type(fid) is not str or not fid:
            fid = None
        function = fragment.get("function")
        if function is None:
            function = {}
        elif type(function) is not dict:
            raise StreamProtocolError("tool call `function` is not an object")
        name = function.get("name")
        if type(name) is not str or not name:
            name = None
        args = function.get("arguments")
        if args is None:
            args = ""
        elif type(args) is not str:
            if type(args) not in (dict, list):
                raise StreamProtocolError("tool call `arguments` is not a string")
            args = json.dumps(args, ensure_ascii=False, separators=(",", ":"))

        call = self._call_for(state, index, fid, name)
        if fid and not call.started and not call.id:
            call.id = fid
            state.by_id[fid] = call
        if name:
            call.name = name
        if not call.started:
            if args:
                call.args.append(args)
            if call.name:
                self._start(state, call, out)
        elif args:
            call.args.append(args)
            out.append(ToolCallArgumentsDelta(state.index, call.pos, call.id, args))

    def _call_for(
        self, state: _ChoiceState, index: int | None, fid: str | None, name: str | None
    ) -> _Call:
        if index is not None:
            call = state.by_index.get(index)
            if call is None or (fid and call.id and not call.generated and fid != call.id):
                call = self._new_call(state)
                state.by_index[index] = call
            return call
        current = state.calls[-1] if state.calls else None
        if fid:
            known = state.by_id.get(fid)
            if known is not None:
                return known
            if current is not None and not current.id and not current.started:
                return current  # its name came first, its id now
            return self._new_call(state)
        if current is None:
            return self._new_call(state)
        if name and (current.name != name or _complete_json(current.args)):
            return self._new_call(state)
        return current

    def _new_call(self, state: _ChoiceState) -> _Call:
        call = _Call(len(state.calls))
        state.calls.append(call)
        return call

    def _start(self, state: _ChoiceState, call: _Call, out: list[StreamEvent]) -> None:
        if not call.id:
            call.id = self._new_id()
            call.generated = True
        call.started = True
        out.append(ToolCallStarted(state.index, call.pos, call.id, call.name))
        if call.args:
            out.append(ToolCallArgumentsDelta(state.index, call.pos, call.id, "".join(call.args)))

    def _finish_calls(self, state: _ChoiceState, out: list[StreamEvent]) -> None:
        for call in state.calls:
            if call.finished:
                continue
            if not call.started:
                self._start(state, call, out)  # never named: the runtime reports it to the model
            call.finished = True
            out.append(
                ToolCallFinished(state.index, call.pos, call.id, call.name, "".join(call.args))
            )

    # -- the end ------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Every choice seen so far has a finish reason (and there is at least one)."""
        return bool(self._choices) and all(
            s.finish_reason is not None for s in self._choices.values()
        )

    def end(self) -> list[StreamEvent]:
        """The body ended: final events, or :class:`StreamTruncated` if the answer was cut."""
        if not self.done and not self.finished:
            raise StreamTruncated(
                "stream ended before the completion finished (no finish_reason, no [DONE])"
            )
        if not self._choices:
            raise StreamProtocolError("stream ended without any choice")
        out: list[StreamEvent] = []
        for state in self._choices.values():
            self._finish_calls(state, out)
        self._ended = True
        return out

    def completion(self) -> Completion:
        if not self._ended:
            raise RuntimeError("completion() before end()")
        choices = tuple(
            Choice(
                index=s.index,
                finish_reason=s.finish_reason,
                content="".join(s.text) or None,
                refusal="".join(s.refusal) or None,
                tool_calls=tuple(ToolCall(c.id, c.name, "".join(c.args)) for c in s.calls),
                reasoning="".join(s.reasoning) or None,
            )
            for s in sorted(self._choices.values(), key=lambda s: s.index)
        )
        return Completion(self._id, self._model, choices, self._usage)


def _complete_json(parts: list[str]) -> bool:
    if not parts:
        return False
    try:
        json.loads("".join(parts))
    except ValueError:
        return False
    return True


# -- non-streaming ------------------------------------------------------------------------------


def parse_completion(
    body: object, *, secret: str | None = None, new_id: Callable[[], str] = new_call_id
) -> Completion:
    """A ``chat.completion`` object (non-streaming answer) into the same :class:`Completion`."""
    try:
        return _parse_completion(body, secret, new_id)
    except (StreamProtocolError, ProviderError):
        raise
    except (TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:
        raise StreamProtocolError(f"unexpected completion shape ({exc})") from None


def _parse_completion(body: object, secret: str | None, new_id: Callable[[], str]) -> Completion:
    if type(body) is not dict:
        raise StreamProtocolError(f"response is a JSON {type(body).__name__}, not an object")
    if body.get("error") is not None:
        raise ProviderError.from_payload(body, secret)
    raw_choices = body.get("choices")
    if type(raw_choices) is not list or not raw_choices:
        raise StreamProtocolError("response has no `choices` list")
    choices = []
    for position, raw in enumerate(raw_choices):
        if type(raw) is not dict:
            raise StreamProtocolError("a choice is not an object")
        index = raw.get("index", position)
        message = raw.get("message") or {}
        if type(index) is not int or type(message) is not dict:
            raise StreamProtocolError("a choice has no integer index or no message object")
        finish = raw.get("finish_reason")
        content = message.get("content")
        refusal = message.get("refusal")
        reasoning = message.get("reasoning") or message.get("reasoning_content")
        calls = []
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            args = function.get("arguments")
            if args is not None and type(args) is not str:
                args = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
            cid = call.get("id")
            name = function.get("name")
            calls.append(
                ToolCall(
                    cid if type(cid) is str and cid else new_id(),
                    name if type(name) is str else "",
                    args or "",
                )
            )
        choices.append(
            Choice(
                index=index,
                finish_reason=finish if type(finish) is str else None,
                content=(_text_of(content, "content") or None) if content is not None else None,
                refusal=(_text_of(refusal, "refusal") or None) if refusal is not None else None,
                tool_calls=tuple(calls),
                reasoning=reasoning if type(reasoning) is str and reasoning else None,
            )
        )
    usage = body.get("usage")
    cid = body.get("id")
    model = body.get("model")
    return Completion(
        cid if type(cid) is str else "",
        model if type(model) is str else "",
        tuple(sorted(choices, key=lambda c: c.index)),
        Usage.from_raw(usage) if type(usage) is dict else None,
    )


def events_from_completion(completion: Completion) -> list[StreamEvent]:
    """The events a stream of ``completion`` would have produced (a server that ignored
    ``stream: true`` and answered with one JSON object still drives the same consumer code)."""
    out: list[StreamEvent] = []
    for choice in completion.choices:
        if choice.reasoning:
            out.append(ReasoningDelta(choice.index, choice.reasoning))
        if choice.content:
            out.append(TextDelta(choice.index, choice.content))
        if choice.refusal:
            out.append(RefusalDelta(choice.index, choice.refusal))
        for pos, call in enumerate(choice.tool_calls):
            out.append(ToolCallStarted(choice.index, pos, call.id, call.name))
            if call.arguments:
                out.append(ToolCallArgumentsDelta(choice.index, pos, call.id, call.arguments))
        for pos, call in enumerate(choice.tool_calls):
            out.append(ToolCallFinished(choice.index, pos, call.id, call.name, call.arguments))
        if choice.finish_reason is not None:
            out.append(ChoiceFinished(choice.index, choice.finish_reason))
    if completion.usage is not None:
        out.append(UsageReported(completion.usage))
    return out
