"""Every provider quirk from issue 3, each with a hand-written stream, through the sans-I/O
decoder + assembler (the client adds only I/O on top)."""

from __future__ import annotations

import contextlib
import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.completions import (
    ChoiceFinished,
    Completion,
    ProviderError,
    RefusalDelta,
    SSEDecoder,
    StreamAssembler,
    StreamEvent,
    StreamProtocolError,
    StreamTruncated,
    TextDelta,
    ToolCall,
    ToolCallArgumentsDelta,
    ToolCallFinished,
    ToolCallStarted,
    UsageReported,
    parse_completion,
)


def ids() -> Any:
    counter = itertools.count()
    return lambda: f"gen_{next(counter)}"


def sse(*chunks: object, done: bool = True) -> bytes:
    parts = [
        (c if isinstance(c, bytes) else b"data: " + json.dumps(c).encode() + b"\n\n")
        for c in chunks
    ]
    if done:
        parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def run(raw: bytes) -> tuple[list[StreamEvent], Completion]:
    decoder, assembler = SSEDecoder(), StreamAssembler(new_id=ids())
    events = assembler.feed(decoder.feed(raw))
    events += assembler.feed(decoder.close(), at_eof=True)
    events += assembler.end()
    return events, assembler.completion()


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, index: int = 0) -> Any:
    return {
        "id": "c1",
        "model": "m",
        "choices": [{"index": index, "delta": delta or {}, "finish_reason": finish}],
    }


def call(**kw: Any) -> dict[str, Any]:
    fn = {k: kw.pop(k) for k in ("name", "arguments") if k in kw}
    return {**kw, "function": fn}


def tc(*fragments: dict[str, Any]) -> dict[str, Any]:
    return {"tool_calls": list(fragments)}


def test_text_deltas_in_order_then_finish() -> None:
    events, completion = run(
        sse(
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk(finish="stop"),
        )
    )
    assert events == [TextDelta(0, "Hel"), TextDelta(0, "lo"), ChoiceFinished(0, "stop")]
    assert completion.choice.content == "Hello"
    assert completion.choice.finish_reason == "stop"
    assert completion.id == "c1"
    assert completion.model == "m"


def test_refusal_deltas() -> None:
    events, completion = run(
        sse(chunk({"refusal": "No"}), chunk({"refusal": "."}), chunk(finish="stop"))
    )
    assert events[:2] == [RefusalDelta(0, "No"), RefusalDelta(0, ".")]
    assert completion.choice.refusal == "No."
    assert completion.choice.content is None


def test_tool_call_without_index_a_name_starts_a_new_call() -> None:
    _, completion = run(
        sse(
            chunk(tc(call(id="a", name="go", arguments='{"x":'))),
            chunk(tc(call(arguments="1}"))),
            chunk(tc(call(name="say", arguments='{"t":'))),
            chunk(tc(call(arguments='"hi"}'))),
            chunk(finish="tool_calls"),
        )
    )
    assert completion.choice.tool_calls == (
        ToolCall("a", "go", '{"x":1}'),
        ToolCall("gen_0", "say", '{"t":"hi"}'),
    )


def test_no_index_same_name_repeated_continues_until_arguments_are_complete() -> None:
    _, completion = run(
        sse(
            chunk(tc(call(name="go", arguments='{"x":'))),
            chunk(tc(call(name="go", arguments="1}"))),
            chunk(tc(call(name="go", arguments='{"x":2}'))),
            chunk(finish="tool_calls"),
        )
    )
    assert [(c.name, c.arguments) for c in completion.choice.tool_calls] == [
        ("go", '{"x":1}'),
        ("go", '{"x":2}'),
    ]


def test_id_and_name_repeated_in_every_fragment_are_set_not_concatenated() -> None:
    events, completion = run(
        sse(
            chunk(tc(call(index=0, id="call_1", type="function", name="go", arguments='{"x"'))),
            chunk(tc(call(index=0, id="call_1", type="function", name="go", arguments=":1}"))),
            chunk(finish="tool_calls"),
        )
    )
    assert completion.choice.tool_calls == (ToolCall("call_1", "go", '{"x":1}'),)
    assert [e for e in events if isinstance(e, ToolCallStarted)] == [
        ToolCallStarted(0, 0, "call_1", "go")
    ]


def test_no_index_but_id_repeated_matches_by_id() -> None:
    _, completion = run(
        sse(
            chunk(tc(call(id="A", name="go", arguments="{"))),
            chunk(tc(call(id="B", name="say", arguments="{"))),
            chunk(tc(call(id="A", arguments="}"))),
            chunk(tc(call(id="B", arguments="}"))),
            chunk(finish="tool_calls"),
        )
    )
    assert completion.choice.tool_calls == (ToolCall("A", "go", "{}"), ToolCall("B", "say", "{}"))


@pytest.mark.parametrize("bad_id", [None, "", 5])
def test_missing_or_empty_id_is_generated(bad_id: object) -> None:
    fragment = call(index=0, name="go", arguments="{}")
    if bad_id is not None:
        fragment["id"] = bad_id
    events, completion = run(sse(chunk(tc(fragment)), chunk(finish="tool_calls")))
    assert completion.choice.tool_calls == (ToolCall("gen_0", "go", "{}"),)
    assert ToolCallFinished(0, 0, "gen_0", "go", "{}") in events


def test_missing_type_is_fine() -> None:
    _, completion = run(
        sse(
            chunk(tc({"index": 0, "id": "x", "function": {"name": "go"}})),
            chunk(finish="tool_calls"),
        )
    )
    assert completion.choice.tool_calls == (ToolCall("x", "go", ""),)


def test_tool_calls_with_finish_reason_stop_are_kept() -> None:
    events, completion = run(
        sse(chunk(tc(call(index=0, id="x", name="go", arguments="{}"))), chunk(finish="stop"))
    )
    assert completion.choice.finish_reason == "stop"
    assert completion.choice.tool_calls == (ToolCall("x", "go", "{}"),)
    assert events[-2:] == [ToolCallFinished(0, 0, "x", "go", "{}"), ChoiceFinished(0, "stop")]


def test_usage_chunk_with_empty_choices() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "extra": {"a": 1}}
    events, completion = run(
        sse(
            chunk({"content": "x"}),
            chunk(finish="stop"),
            {"id": "c1", "choices": [], "usage": usage},
            {"id": "c1", "choices": [], "usage": None},
        )
    )
    assert isinstance(events[-1], UsageReported)
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.total_tokens) == (3, 5)
    assert completion.usage.raw == usage


def test_usage_inside_the_finish_chunk_groq_style() -> None:
    finish = chunk(finish="stop")
    finish["usage"] = {"prompt_tokens": 1, "completion_tokens": "bad", "total_tokens": 1}
    _, completion = run(sse(chunk({"content": "x"}), finish))
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 0


def test_first_chunk_with_empty_choices_azure_prompt_filter() -> None:
    azure_first = {"id": "", "model": "", "choices": [], "prompt_filter_results": [{"x": 1}]}
    _, completion = run(sse(azure_first, chunk({"content": "hi"}), chunk(finish="stop")))
    assert completion.choice.content == "hi"
    assert completion.id == "c1"
    assert completion.model == "m"


def test_text_before_tool_calls_in_the_same_message() -> None:
    events, completion = run(
        sse(
            chunk({"content": "Let me walk."}),
            chunk(tc(call(index=0, id="x", name="go", arguments='{"x":1}'))),
            chunk(finish="tool_calls"),
        )
    )
    assert completion.choice.content == "Let me walk."
    assert completion.choice.tool_calls == (ToolCall("x", "go", '{"x":1}'),)
    assert events[0] == TextDelta(0, "Let me walk.")
    assert completion.choice.to_message() == {
        "role": "assistant",
        "content": "Let me walk.",
        "tool_calls": [
            {"id": "x", "type": "function", "function": {"name": "go", "arguments": '{"x":1}'}}
        ],
    }


def test_whole_arguments_in_one_chunk_and_arguments_as_object() -> None:
    events, completion = run(
        sse(
            chunk(tc(call(index=0, id="x", name="go", arguments={"x": 1, "z": "é"}))),
            chunk(finish="tool_calls"),
        )
    )
    assert completion.choice.tool_calls[0].arguments == '{"x":1,"z":"é"}'
    assert events[:2] == [
        ToolCallStarted(0, 0, "x", "go"),
        ToolCallArgumentsDelta(0, 0, "x", '{"x":1,"z":"é"}'),
    ]


def test_arguments_before_name_are_buffered_until_started() -> None:
    events, completion = run(
        sse(
            chunk(tc({"index": 0, "function": {"arguments": "{"}})),
            chunk(tc({"index": 0, "id": "late", "function": {"name": "go", "arguments": "}"}})),
            chunk(finish="tool_calls"),
        )
    )
    assert events[:2] == [
        ToolCallStarted(0, 0, "late", "go"),
        ToolCallArgumentsDelta(0, 0, "late", "{}"),
    ]
    assert completion.choice.tool_calls == (ToolCall("late", "go", "{}"),)


def test_same_index_different_id_is_a_new_call() -> None:
    _, completion = run(
        sse(
            chunk(tc(call(index=0, id="a", name="go", arguments="{}"))),
            chunk(tc(call(index=0, id="b", name="say", arguments="{}"))),
            chunk(finish="tool_calls"),
        )
    )
    assert [c.id for c in completion.choice.tool_calls] == ["a", "b"]


def test_parallel_calls_interleaved_by_index() -> None:
    _, completion = run(
        sse(
            chunk(
                tc(
                    call(index=0, id="a", name="go", arguments="{"),
                    call(index=1, id="b", name="say", arguments="{"),
                )
            ),
            chunk(tc(call(index=1, arguments="}"), call(index=0, arguments="}"))),
            chunk(finish="tool_calls"),
        )
    )
    assert completion.choice.tool_calls == (ToolCall("a", "go", "{}"), ToolCall("b", "say", "{}"))


def test_n_greater_than_one_interleaved() -> None:
    events, completion = run(
        sse(
            chunk({"content": "a"}, index=0),
            chunk({"content": "b"}, index=1),
            chunk({"content": "c"}, index=0),
            chunk(finish="stop", index=1),
            chunk(finish="length", index=0),
        )
    )
    assert [(c.index, c.content, c.finish_reason) for c in completion.choices] == [
        (0, "ac", "length"),
        (1, "b", "stop"),
    ]
    assert TextDelta(1, "b") in events


def test_content_as_list_of_parts() -> None:
    parts = [{"type": "text", "text": "A"}, {"type": "thinking", "thinking": "no"}, {"text": "B"}]
    _, completion = run(sse(chunk({"content": parts}), chunk(finish="stop")))
    assert completion.choice.content == "AB"


def test_reasoning_deltas_are_kept_apart_from_content() -> None:
    _, completion = run(
        sse(chunk({"reasoning": "think"}), chunk({"content": "say"}), chunk(finish="stop"))
    )
    assert completion.choice.content == "say"
    assert completion.choice.reasoning == "think"


def test_event_error_after_200_raises_provider_error() -> None:
    error = {
        "error": {
            "message": "Tool call validation failed",
            "type": "invalid_request_error",
            "code": "tool_use_failed",
        }
    }
    raw = sse(
        chunk({"content": ""}), b"event: error\ndata: " + json.dumps(error).encode() + b"\n\n"
    )
    with pytest.raises(ProviderError) as info:
        run(raw)
    assert info.value.message == "Tool call validation failed"
    assert info.value.code == "tool_use_failed"
    assert info.value.type == "invalid_request_error"
    assert not info.value.retryable


def test_event_error_with_plain_text_data() -> None:
    with pytest.raises(ProviderError, match="overloaded"):
        run(b"event: error\ndata: overloaded\n\n")


def test_error_object_inside_a_chunk_with_choices() -> None:
    bad = chunk({"content": ""})
    bad["error"] = {"code": 502, "message": "Upstream failed"}
    with pytest.raises(ProviderError) as info:
        run(sse(chunk({"content": "x"}), bad))
    assert info.value.code == 502
    assert info.value.retryable


def test_end_without_done_after_finish_is_complete() -> None:
    _, completion = run(sse(chunk({"content": "x"}), chunk(finish="stop"), done=False))
    assert completion.choice.content == "x"


def test_end_without_done_before_finish_is_truncated() -> None:
    with pytest.raises(StreamTruncated):
        run(sse(chunk({"content": "x"}), done=False))


def test_cut_inside_a_data_line_is_truncated() -> None:
    with pytest.raises(StreamTruncated, match="cut inside"):
        run(sse(chunk({"content": "x"}), done=False) + b'data: {"id":"c1","cho')


def test_n2_with_one_choice_unfinished_is_truncated() -> None:
    with pytest.raises(StreamTruncated):
        run(sse(chunk(finish="stop", index=0), chunk({"content": "x"}, index=1), done=False))


def test_non_json_data_line_names_the_line() -> None:
    with pytest.raises(StreamProtocolError, match="not JSON: 'hello world'"):
        run(b"data: hello world\n\n")


def test_done_without_any_choice_is_a_protocol_error() -> None:
    with pytest.raises(StreamProtocolError, match="without any choice"):
        run(b"data: [DONE]\n\n")


def test_data_after_done_is_ignored() -> None:
    _, completion = run(sse(chunk({"content": "x"}), chunk(finish="stop")) + b"data: junk\n\n")
    assert completion.choice.content == "x"


@pytest.mark.parametrize(
    "bad",
    [
        [1, 2],
        {"choices": "x"},
        {"choices": [5]},
        {"choices": [{"index": "0", "delta": {}}]},
        {"choices": [{"delta": {"content": 5}}]},
        {"choices": [{"delta": {"tool_calls": {"a": 1}}}]},
        {"choices": [{"delta": {"tool_calls": ["x"]}}]},
        {"choices": [{"delta": {"tool_calls": [{"function": "go"}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"function": {"arguments": 5}}]}}]},
        {"choices": [{"delta": [], "finish_reason": 3}]},
        {"choices": [{"delta": "text"}]},
    ],
)
def test_odd_shapes_raise_a_typed_protocol_error(bad: object) -> None:
    with pytest.raises(StreamProtocolError):
        run(sse(bad))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "choices",
                    "delta",
                    "content",
                    "tool_calls",
                    "index",
                    "id",
                    "function",
                    "name",
                    "arguments",
                    "finish_reason",
                    "usage",
                    "error",
                    "refusal",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_json, max_size=4))
def test_fuzz_never_raises_anything_untyped(chunks: list[object]) -> None:
    with contextlib.suppress(StreamProtocolError, ProviderError):
        run(sse(*chunks))


def test_non_streaming_body_parses_into_the_same_completion() -> None:
    body = {
        "id": "c9",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "",
                            "type": "function",
                            "function": {"name": "go", "arguments": {"x": 1}},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    completion = parse_completion(body, new_id=ids())
    assert completion.choice.tool_calls == (ToolCall("gen_0", "go", '{"x":1}'),)
    assert completion.usage is not None
    assert completion.usage.total_tokens == 3
    with pytest.raises(ProviderError, match="nope"):
        parse_completion({"error": {"message": "nope"}})
    with pytest.raises(StreamProtocolError):
        parse_completion({"choices": [{"message": {"tool_calls": [5]}}]})
