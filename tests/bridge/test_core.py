"""The sans-I/O core: bytes in, messages / error frames / close codes out. No sockets."""

from __future__ import annotations

import tracemalloc
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bridge
from bridge import (
    BridgeConfig,
    BridgeConnection,
    CallTable,
    ConnectionState,
    DuplicateCall,
    ErrorCode,
    Hello,
    Overloaded,
    PendingCall,
    ProtocolError,
    Result,
    SessionCore,
    TokenBucket,
    UnknownNpc,
    decode_frame,
    encode,
)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes) -> dict[str, Any]:
    out = msgpack.unpackb(data, raw=False)
    assert isinstance(out, dict)
    return out


HELLO = {"t": "hello", "proto": 1, "game": "g", "npcs": [{"npc": "a", "character": "guard"}]}

# ------------------------------------------------------------------ codec


def test_decode_valid_result() -> None:
    msg = decode_frame(pack({"t": "result", "id": "c1", "ok": True, "data": {"x": 1.5}}))
    assert isinstance(msg, Result)
    assert msg.data == {"x": 1.5}


def test_encode_decode_roundtrip_every_game_message() -> None:
    frames = [
        HELLO,
        {"t": "spawn", "npc": "a", "character": "guard", "state": {"hp": 3}},
        {"t": "despawn", "npc": "a"},
        {"t": "event", "npc": "a", "kind": "heard", "data": {"speaker": "p", "text": "hi"}},
        {"t": "result", "id": "c", "ok": False, "error": {"code": "BLOCKED", "message": "no"}},
        {"t": "progress", "id": "c", "data": {"left_m": 12}},
    ]
    for frame in frames:
        msg = decode_frame(pack(frame))
        assert decode_frame(encode(msg)) == msg


@pytest.mark.parametrize(
    ("data", "code", "close"),
    [
        (pack({"t": "despawn", "npc": "a"})[:-1], ErrorCode.MALFORMED, 1007),
        (pack({"t": "despawn", "npc": "a"}) + b"\x01", ErrorCode.MALFORMED, 1007),
        (b"\x91" * 2000 + b"\xc0", ErrorCode.MALFORMED, 1007),
        (pack([1, 2]), ErrorCode.MALFORMED, 1007),
        (pack({"t": "despawn", "npc": b"bin"}), ErrorCode.BAD_INPUT, None),
        (pack({"t": "nope", "id": "i"}), ErrorCode.UNKNOWN_TYPE, None),
        (pack({"t": "welcome", "id": "i"}), ErrorCode.UNKNOWN_TYPE, None),  # wrong direction
        (pack({"id": "i"}), ErrorCode.BAD_INPUT, None),
        (b"", ErrorCode.MALFORMED, 1007),
    ],
)
def test_decode_errors(data: bytes, code: ErrorCode, close: int | None) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(data)
    assert info.value.code == code
    assert info.value.close_code == close


def test_oversized_frame_is_1009() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(b"\x80" * 100, max_frame_bytes=50)
    assert info.value.close_code == 1009


def test_lying_header_allocates_nothing() -> None:
    frame = b"\x81\xa1t\xdd\xff\xff\xff\xff"
    tracemalloc.start()
    try:
        for _ in range(100):
            with pytest.raises(ProtocolError):
                decode_frame(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_bad_input_carries_path_and_id() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(pack({"t": "result", "id": "c9", "ok": True, "error": {"code": 1}}))
    assert info.value.path == "error.code"
    assert info.value.call_id == "c9"


DOCUMENTED: dict[ErrorCode, set[int | None]] = {
    ErrorCode.MALFORMED: {1007, 1009},
    ErrorCode.BAD_INPUT: {None},
    ErrorCode.UNKNOWN_TYPE: {None},
}


def _check_any(data: bytes) -> None:
    error: ProtocolError | None = None
    try:
        msg = decode_frame(data, max_frame_bytes=4096)
    except ProtocolError as exc:
        error = exc
    if error is None:
        assert msg.t in bridge.messages.GAME_MESSAGE_TYPES
    else:
        assert ErrorCode(error.code) in DOCUMENTED
        assert error.close_code in DOCUMENTED[ErrorCode(error.code)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    _check_any(data)


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["hello", "spawn", "despawn", "event", "result", "progress", "x", "call"]),
    st.dictionaries(
        st.sampled_from(["id", "npc", "ok", "data", "kind", "character", "error", "proto", "game"]),
        json_like,
        max_size=6,
    ),
)
def test_fuzz_structured_maps(t: str, fields: dict[str, Any]) -> None:
    _check_any(pack({"t": t, **fields}))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=60), st.integers(0, 59), st.integers(0, 255))
def test_fuzz_mutated_valid_frame(prefix: bytes, pos: int, byte: int) -> None:
    frame = bytearray(pack({"t": "result", "id": "c1", "ok": True, "data": {"v": [1, "x"]}}))
    frame[pos % len(frame)] = byte
    _check_any(bytes(frame))


# ------------------------------------------------------------------ connection state machine


def _conn(**kw: Any) -> BridgeConnection:
    return BridgeConnection(BridgeConfig(**kw), authenticated=False, now=0.0)


def test_hello_then_open() -> None:
    conn = _conn()
    msg = conn.receive(pack(HELLO), 0.0)
    assert isinstance(msg, Hello)
    assert conn.state.value == ConnectionState.AWAITING_HELLO.value
    conn.accept(b"welcome-bytes")
    assert conn.state.value == ConnectionState.OPEN.value
    assert conn.data_to_send() == [b"welcome-bytes"]
    assert conn.receive(pack({"t": "despawn", "npc": "a"}), 0.1) is not None


def test_first_frame_must_be_hello() -> None:
    conn = _conn()
    assert conn.receive(pack({"t": "despawn", "npc": "a"}), 0.0) is None
    assert conn.close_code == 1008
    assert unpack(conn.data_to_send()[0])["code"] == "BAD_INPUT"
    assert conn.receive(pack(HELLO), 0.0) is None  # closing: ignored


def test_token_in_hello_and_version() -> None:
    conn = _conn(token="tok")
    assert conn.receive(pack({**HELLO, "token": "bad"}), 0.0) is None
    assert conn.close_code == 4001
    conn = _conn(token="tok")
    assert conn.receive(pack({**HELLO, "token": "tok"}), 0.0) is not None
    conn = BridgeConnection(BridgeConfig(token="tok"), authenticated=True)
    assert conn.receive(pack(HELLO), 0.0) is not None
    conn = _conn()
    conn.receive(pack({**HELLO, "proto": 9}), 0.0)
    assert conn.close_code == 4003
    assert unpack(conn.data_to_send()[0])["code"] == "UNSUPPORTED_VERSION"


def test_text_frame_and_hello_deadline() -> None:
    conn = _conn()
    assert conn.receive("hi", 0.0) is None
    assert conn.close_code == 1003
    conn = _conn(hello_timeout_s=1.0)
    assert not conn.check_hello_deadline(0.5)
    assert conn.check_hello_deadline(1.0)
    assert conn.close_code == 1008


def test_rate_limit_then_flood_close() -> None:
    conn = _conn(events_per_s=2, event_burst=3)
    conn.receive(pack(HELLO), 0.0)
    conn.accept(b"w")
    conn.data_to_send()
    ev = pack({"t": "despawn", "npc": "a"})
    assert all(conn.receive(ev, 0.0) is not None for _ in range(3))
    assert conn.receive(ev, 0.0) is None
    assert unpack(conn.data_to_send()[0])["code"] == "RATE_LIMITED"
    assert conn.receive(ev, 1.0) is not None  # refilled: 2 tokens after 1 s
    for _ in range(5):
        conn.receive(ev, 1.0)
    assert conn.close_code == 1008


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10, burst=2, now=0.0)
    assert bucket.take(0.0)
    assert bucket.take(0.0)
    assert not bucket.take(0.0)
    assert bucket.take(0.1)
    assert not bucket.take(0.1)


# ------------------------------------------------------------------ calls and sessions


def _pc(call_id: str, deadline: float) -> PendingCall:
    return PendingCall(call_id, "a", "go", {}, "call", deadline, False)


def test_call_table_first_answer_wins_and_deadlines() -> None:
    table = CallTable(max_in_flight=2)
    table.add(_pc("1", 5.0))
    table.add(_pc("2", 1.0))
    with pytest.raises(Overloaded):
        table.add(_pc("3", 1.0))
    assert table.next_deadline() == 1.0
    assert [c.id for c in table.expired(1.0)] == ["2"]
    assert table.finish("1") is not None
    assert table.finish("1") is None
    assert table.classify("1") == "late"
    assert table.classify("zz") == "unknown"
    table.add(_pc("4", 9.0))
    with pytest.raises(DuplicateCall):
        table.add(_pc("4", 9.0))
    assert table.next_deadline() == 9.0


def test_call_table_heap_stays_bounded() -> None:
    table = CallTable(max_in_flight=10)
    for i in range(10_000):
        table.add(_pc(str(i), 100.0 + i))
        table.finish(str(i))
    assert len(table._heap) < 200


def test_session_core_resume_bookkeeping() -> None:
    hello = Hello.model_validate(HELLO)
    core = SessionCore(hello, BridgeConfig())
    core.attach()
    with pytest.raises(UnknownNpc):
        core.begin_call("nobody", "go", {}, mode="call", timeout_s=1, idempotent=False, now=0)
    sent = core.begin_call("a", "go", {}, mode="call", timeout_s=10, idempotent=True, now=0)
    frame = unpack(core.call_frame(sent, 0.0))
    assert frame["deadline_ms"] == 10_000
    assert frame["id"] == sent.id
    core.say_frame("a", "s1", "hel")
    core.detach(1.0)
    unsent = core.begin_call("a", "look", {}, mode="call", timeout_s=10, idempotent=False, now=1)
    assert not core.window_expired(5.0)
    assert core.window_expired(31.0)
    pending, frames = core.resume(hello, 2.0)
    assert pending == [sent.id]
    decoded = [unpack(f) for f in frames]
    assert decoded[0] == {"t": "say_end", "npc": "a", "stream": "s1", "reason": "interrupted"}
    assert decoded[1]["id"] == unsent.id
    assert decoded[1]["deadline_ms"] == 9000
    # The game already had say_end for s1: what the runtime still says on it is dropped,
    # so the stream never ends twice; a new stream speaks normally.
    assert core.say_frame("a", "s1", "lo") is None
    assert core.say_end_frame("a", "s1", "done") is None
    new = core.say_frame("a", "s2", "hi")
    assert new is not None
    assert unpack(new) == {"t": "say", "npc": "a", "stream": "s2", "text": "hi"}
    keep, lost = core.end()
    assert [c.id for c in keep] == [sent.id]
    assert [c.id for c in lost] == [unsent.id]


def test_speech_begun_while_detached_never_reaches_the_game() -> None:
    hello = Hello.model_validate(HELLO)
    core = SessionCore(hello, BridgeConfig())
    core.attach()
    core.detach(1.0)
    assert core.say_frame("a", "s9", "partial") is None
    _, frames = core.resume(hello, 2.0)
    assert frames == []
    assert core.say_frame("a", "s9", " rest") is None
    assert core.say_end_frame("a", "s9", "done") is None


def test_public_api() -> None:
    for name in bridge.__all__:
        assert hasattr(bridge, name), name
    assert {"BridgeServer", "GameClient", "Session", "BridgeConfig"} <= set(bridge.__all__)


def test_config_from_mapping() -> None:
    cfg = BridgeConfig.from_mapping({"port": 0, "allowed_origins": ["https://a"], "token": None})
    assert cfg.allowed_origins == ("https://a",)
    assert cfg.max_in_flight == 256
    with pytest.raises(ValueError, match="unknown"):
        BridgeConfig.from_mapping({"prot": 1})
    with pytest.raises(ValueError, match="send_timeout_s"):
        BridgeConfig(send_timeout_s=0)


@given(st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.booleans())
def test_float_values_accepted_exactly_when_finite(
    value: float, nested: bool, single: bool
) -> None:
    """The value walk tests floats inline (hot path); it must agree with math.isfinite."""
    import math

    data: Any = [[value]] if nested else {"v": value}
    obj = {"t": "result", "id": "c1", "ok": True, "data": data}
    if single and (not math.isfinite(value) or abs(value) < 3.4e38):
        frame = msgpack.packb(obj, use_single_float=True)  # float 32 on the wire
    else:
        frame = pack(obj)
    if math.isfinite(value):
        msg = decode_frame(frame)
        assert isinstance(msg, Result)
    else:
        with pytest.raises(ProtocolError) as info:
            decode_frame(frame)
        assert info.value.code == ErrorCode.BAD_INPUT
        assert info.value.call_id == "c1"
        assert info.value.path == ("data.0.0" if nested else "data.v")


def test_seeded_ids_repeat_and_unseeded_ids_do_not() -> None:
    """BridgeConfig.id_seed makes a run repeatable id for id (the simulator's record/replay);
    the resume token stays random: it is a credential."""
    import random

    hello = Hello.model_validate(HELLO)
    first = SessionCore(hello, BridgeConfig(), ids=random.Random(7))
    again = SessionCore(hello, BridgeConfig(), ids=random.Random(7))
    assert first.id == again.id
    assert first.calls.new_id() == again.calls.new_id()
    assert first.resume_token != again.resume_token
    plain = SessionCore(hello, BridgeConfig())
    other = SessionCore(hello, BridgeConfig())
    assert plain.id != other.id
