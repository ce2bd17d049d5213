"""The sans-I/O SSE decoder against the spec's grammar, split at every byte boundary."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from runtime.completions import SSEDecoder, SSEEvent


def decode(raw: bytes, split: int | None = None) -> list[SSEEvent]:
    decoder = SSEDecoder()
    out: list[SSEEvent] = []
    step = split or max(1, len(raw))
    for i in range(0, len(raw), step):
        out += decoder.feed(raw[i : i + step])
    out += decoder.close()
    return out


def test_data_with_and_without_space() -> None:
    assert decode(b"data: a\n\ndata:b\n\ndata:  c\n\n") == [
        SSEEvent("message", "a"),
        SSEEvent("message", "b"),
        SSEEvent("message", " c"),
    ]


def test_multiline_data_joined_with_newline() -> None:
    assert decode(b"data: one\ndata: two\ndata\n\n") == [SSEEvent("message", "one\ntwo\n")]


def test_comments_and_unknown_fields_ignored() -> None:
    raw = b": OPENROUTER PROCESSING\n\n:\nretry: 10\nfoo: bar\ndata: x\n\n"
    assert decode(raw) == [SSEEvent("message", "x")]


def test_event_name_and_id() -> None:
    raw = b"event: error\nid: 7\ndata: {}\n\ndata: next\n\n"
    assert decode(raw) == [SSEEvent("error", "{}", "7"), SSEEvent("message", "next", "7")]


def test_event_without_data_is_not_dispatched() -> None:
    assert decode(b"event: ping\n\ndata: x\n\n") == [SSEEvent("message", "x")]


def test_crlf_and_cr_line_endings() -> None:
    assert decode(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n") == [
        SSEEvent("message", "a"),
        SSEEvent("message", "b"),
        SSEEvent("message", "c"),
    ]


def test_crlf_split_between_reads_is_one_line_ending() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n\r") == [SSEEvent("message", "a")]
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [SSEEvent("message", "b")]


def test_bom_is_dropped_even_when_split() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef") == []
    assert decoder.feed(b"\xbb\xbfdata: x\n\n") == [SSEEvent("message", "x")]


def test_utf8_split_inside_a_character() -> None:
    raw = "data: 18°C é\n\n".encode()
    for split in range(1, len(raw)):
        assert decode(raw, split) == [SSEEvent("message", "18°C é")]


def test_close_flushes_an_unterminated_last_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: [DONE]") == []
    assert decoder.pending
    assert decoder.close() == [SSEEvent("message", "[DONE]")]
    assert SSEDecoder().close() == []


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert decode(b"data: \xff\n\n") == [SSEEvent("message", "\ufffd")]


_line = st.one_of(
    st.just(b"data: {}"),
    st.just(b"data:x"),
    st.just(b": comment"),
    st.just(b"event: error"),
    st.just(b""),
    st.binary(max_size=12).filter(lambda b: b"\n" not in b and b"\r" not in b),
)


@given(
    st.lists(_line, max_size=20),
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.integers(1, 9),
)
def test_any_split_gives_the_same_events(lines: list[bytes], eol: bytes, split: int) -> None:
    raw = b"".join(line + eol for line in lines)
    assert decode(raw, split) == decode(raw)
