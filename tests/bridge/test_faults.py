"""The 20 faults of design.md section 5, each against the real server on loopback."""

from __future__ import annotations

import asyncio
import logging
import random
import struct

import msgpack
import pytest
from websockets.exceptions import InvalidStatus

from bridge import (
    CallTimeout,
    Disconnected,
    GameClient,
    GameError,
    UnknownCapability,
)
from tests.bridge.bridge_helpers import (
    Recorder,
    close_code,
    eventually,
    handshake,
    hello,
    only_session,
    open_raw,
    pack,
    recv_map,
    running,
)

pytestmark = pytest.mark.asyncio

GOOD = pack({"t": "event", "npc": "guard-1", "kind": "saw", "data": {"what": "a fox"}})


async def _expect_close(frame: bytes, code: int, error: str | None = "MALFORMED") -> None:
    async with running() as server:
        ws, _ = await handshake(server)
        await ws.send(frame)
        if error is not None:
            err = await recv_map(ws)
            assert err["t"] == "error"
            assert err["code"] == error
        assert await close_code(ws) == code
        # The server is still fine for others.
        ws2, _ = await handshake(server)
        await ws2.close()


# 1, 2: truncated msgpack, trailing bytes
async def test_01_truncated_frame_is_malformed_1007() -> None:
    await _expect_close(GOOD[:-3], 1007)


async def test_02_trailing_bytes_are_malformed_1007() -> None:
    await _expect_close(GOOD + b"\x00", 1007)


# 3: a header claiming 2**32-1 items is refused before allocation
@pytest.mark.parametrize("header", [b"\xdf\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff"])
async def test_03_lying_container_header_rejected(header: bytes) -> None:
    await _expect_close(b"\x81\xa1t" + header, 1007)


# 4: frame over max_frame_bytes
async def test_04_frame_too_big_closes_1009() -> None:
    async with running(max_frame_bytes=1024) as server:
        ws, _ = await handshake(server)
        big = pack({"t": "event", "npc": "guard-1", "kind": "x", "data": {"s": "a" * 2000}})
        await ws.send(big)
        assert await close_code(ws) == 1009


# 5: nesting 2000 deep
async def test_05_deep_nesting_closes_1007() -> None:
    deep = b"\x84\xa1t\xa5event\xa3npc\xa7guard-1\xa4kind\xa1x\xa4data\x81\xa1a" + b"\x91" * 2000
    await _expect_close(deep + b"\xc0", 1007)


async def test_05b_moderate_nesting_over_limit_closes_1007() -> None:
    # Under msgpack's own stack limit (1024) but over ours (32).
    value: object = 1
    for _ in range(100):
        value = [value]
    await _expect_close(pack({"t": "event", "npc": "g", "kind": "x", "data": {"a": value}}), 1007)


# 6: int keys, invalid UTF-8, reserved byte 0xc1
@pytest.mark.parametrize(
    "frame",
    [
        pack({"t": "event", 1: 2}),
        b"\x82\xa1t\xa5event\xa3npc\xa2\xff\xfe",
        b"\xc1",
    ],
    ids=["int-key", "bad-utf8", "0xc1"],
)
async def test_06_invalid_encoding_closes_1007(frame: bytes) -> None:
    await _expect_close(frame, 1007)


# 7: ext / timestamp / NaN / inf values -> BAD_INPUT, the connection stays
@pytest.mark.parametrize(
    "value",
    [msgpack.ExtType(5, b"xy"), msgpack.Timestamp(1, 0), float("nan"), float("inf")],
    ids=["ext", "timestamp", "nan", "inf"],
)
async def test_07_unrepresentable_values_bad_input(value: object) -> None:
    async with running() as server:
        ws, _ = await handshake(server)
        session = await only_session(server)
        task = asyncio.create_task(session.call("guard-1", "look", {}))
        call = await recv_map(ws)
        await ws.send(pack({"t": "result", "id": call["id"], "ok": True, "data": {"v": value}}))
        err = await recv_map(ws)
        assert err == {
            "t": "error",
            "id": call["id"],
            "code": "BAD_INPUT",
            "message": err["message"],
            "retryable": False,
        }
        assert "data.v" in err["message"]
        # Still open: a proper answer completes the call.
        await ws.send(pack({"t": "result", "id": call["id"], "ok": True, "data": 1}))
        assert await task == 1
        await ws.close()


# 8: text frame
async def test_08_text_frame_closes_1003() -> None:
    async with running() as server:
        ws, _ = await handshake(server)
        await ws.send('{"t": "event"}')
        assert await close_code(ws) == 1003


# 9: unknown t echoes the id and keeps the connection; unknown capability is a typed error
async def test_09_unknown_type_and_capability() -> None:
    async with running() as server:
        ws, _ = await handshake(server, capabilities=["look"])
        await ws.send(pack({"t": "teleport", "id": "abc"}))
        err = await recv_map(ws)
        assert (err["code"], err["id"]) == ("UNKNOWN_TYPE", "abc")
        session = await only_session(server)
        with pytest.raises(UnknownCapability):
            await session.call("guard-1", "fly", {})
        task = asyncio.create_task(session.call("guard-1", "look", {}))
        call = await recv_map(ws)
        assert call["cap"] == "look"
        await ws.send(pack({"t": "result", "id": call["id"], "ok": True}))
        assert await task is None


async def test_09b_game_without_handler_answers_unknown_capability() -> None:
    async with (
        running() as server,
        GameClient(server.url, capabilities=["fly"], npcs=[("guard-1", "guard")]),
    ):
        session = await only_session(server)
        with pytest.raises(GameError) as info:
            await session.call("guard-1", "fly", {})
        assert info.value.code == "UNKNOWN_CAPABILITY"


# 10: wrong types / missing / extra fields / oversized id -> BAD_INPUT with the field path
@pytest.mark.parametrize(
    ("frame", "path"),
    [
        ({"t": "result", "id": "x", "ok": "yes"}, "ok"),
        ({"t": "result", "ok": True}, "id"),
        ({"t": "result", "id": "x", "ok": True, "extra": 1}, "extra"),
        ({"t": "result", "id": "x" * 65, "ok": True}, "id"),
        ({"t": "event", "npc": "guard-1", "kind": "heard", "data": {"speaker": "p"}}, "text"),
        ({"t": "spawn", "npc": "n", "character": 5}, "character"),
    ],
    ids=["wrong-type", "missing", "extra", "oversized-id", "heard-shape", "spawn-type"],
)
async def test_10_bad_fields(frame: dict[str, object], path: str) -> None:
    async with running() as server:
        ws, _ = await handshake(server)
        await ws.send(pack(frame))
        err = await recv_map(ws)
        assert err["code"] == "BAD_INPUT"
        assert path in err["message"]
        if frame.get("id") == "x":
            assert err["id"] == "x"
        await ws.send(GOOD)  # the connection is still open
        await ws.close()
        assert ws.close_code == 1000


# 11: the same call id twice is never executed twice
async def test_11_same_call_id_executes_once() -> None:
    async with running() as server:
        game = GameClient(server.url, npcs=[("guard-1", "guard")])
        runs = 0

        async def open_gate(call: object) -> str:
            nonlocal runs
            runs += 1
            return f"opened #{runs}"

        game.handle("openGate", open_gate)
        async with game:
            session = await only_session(server)
            first = await session.call("guard-1", "openGate", {}, call_id="gate-1")
            again = await session.call("guard-1", "openGate", {}, call_id="gate-1")
            assert first == again == "opened #1"
            assert runs == 1
            assert game.executions == 1


# 12: answers twice / unknown id / after timeout: first wins, the rest is logged
async def test_12_extra_answers_dropped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bridge.server")
    async with running() as server:
        ws, _ = await handshake(server)
        session = await only_session(server)
        task = asyncio.create_task(session.call("guard-1", "look", {}))
        call = await recv_map(ws)
        await ws.send(pack({"t": "result", "id": call["id"], "ok": True, "data": "first"}))
        await ws.send(pack({"t": "result", "id": call["id"], "ok": True, "data": "second"}))
        await ws.send(pack({"t": "result", "id": "never-issued", "ok": True}))
        assert await task == "first"
        await eventually(lambda: "never-issued" in caplog.text)
        assert "late answer" in caplog.text
        assert "unknown answer" in caplog.text
        # Still usable afterwards.
        task = asyncio.create_task(session.call("guard-1", "look", {}))
        call = await recv_map(ws)
        await ws.send(pack({"t": "result", "id": call["id"], "ok": True, "data": "next"}))
        assert await task == "next"


# 13: the game never answers: TIMEOUT at the deadline, cancel sent, late answer dropped
async def test_13_timeout_sends_cancel_and_drops_late_answer() -> None:
    async with running() as server:
        ws, _ = await handshake(server)
        session = await only_session(server)
        task = asyncio.create_task(session.call("guard-1", "look", {}, timeout_s=0.2))
        call = await recv_map(ws)
        assert 0 < call["deadline_ms"] <= 200
        with pytest.raises(CallTimeout):
            await task
        cancel = await recv_map(ws)
        assert cancel == {"t": "cancel", "id": call["id"], "reason": "timeout"}
        await ws.send(pack({"t": "result", "id": call["id"], "ok": True, "data": "late"}))
        assert session.in_flight == 0
        task = asyncio.create_task(session.call("guard-1", "look", {}))
        call = await recv_map(ws)
        await ws.send(pack({"t": "result", "id": call["id"], "ok": True, "data": "ok"}))
        assert await task == "ok"


# 14: disconnect mid-call and mid-speech, resume within the window
async def test_14_resume_keeps_calls_and_interrupts_speech() -> None:
    handler = Recorder()
    async with running(handler) as server:
        ws, welcome = await handshake(server)
        session = await only_session(server)
        task = asyncio.create_task(session.call("guard-1", "look", {}))
        call = await recv_map(ws)
        assert session.say("guard-1", "s1", "Halt, who goes")
        assert (await recv_map(ws))["t"] == "say"
        ws.transport.abort()  # the cable is cut
        await eventually(lambda: not session.connected)
        assert not session.say("guard-1", "s1", " there?")  # dropped while detached
        ws2, welcome2 = await handshake(server, resume=welcome["resume_token"])
        assert welcome2["session"] == welcome["session"]
        assert welcome2["pending"] == [call["id"]]
        end = await recv_map(ws2)
        assert end == {"t": "say_end", "npc": "guard-1", "stream": "s1", "reason": "interrupted"}
        await ws2.send(pack({"t": "result", "id": call["id"], "ok": True, "data": "a fox"}))
        assert await task == "a fox"
        assert len(handler.opened) == 1
        assert not handler.closed
        assert "guard-1" in session.npcs


async def test_14b_after_the_window_idempotent_resent_others_disconnected() -> None:
    handler = Recorder()
    async with running(handler, resume_window_s=0.2) as server:
        ws, welcome = await handshake(server)
        session = await only_session(server)
        safe = asyncio.create_task(session.call("guard-1", "look", {}, idempotent=True))
        unsafe = asyncio.create_task(session.call("guard-1", "openGate", {}))
        safe_call = await recv_map(ws)
        await recv_map(ws)
        ws.transport.abort()
        with pytest.raises(Disconnected, match="outcome unknown"):
            await unsafe
        await handler.closed_event.wait()
        # Too late to resume: a new session of the same game gets the idempotent call again.
        ws2, welcome2 = await handshake(server, resume=welcome["resume_token"])
        assert welcome2["session"] != welcome["session"]
        again = await recv_map(ws2)
        assert again["t"] == "call"
        assert again["id"] == safe_call["id"]
        await ws2.send(pack({"t": "result", "id": again["id"], "ok": True, "data": "seen"}))
        assert await safe == "seen"


# 15: a stalled consumer is closed 1013; other sessions keep working
async def test_15_stalled_consumer_closed_1013_others_unaffected() -> None:
    async with running(send_timeout_s=0.3, max_outbox=100_000) as server:
        slow_ws, _ = await handshake(server, game="slow")
        slow = await only_session(server)
        fast = GameClient(server.url, game="fast", npcs=[("guard-2", "guard")])

        @fast.default_handler
        async def echo(call: object) -> str:
            return "ok"

        async with fast:
            sessions = list(server.sessions.values())
            fast_session = next(s for s in sessions if s.game == "fast")
            slow_ws.transport.pause_reading()  # stops reading; the kernel buffers fill up
            text = "x" * 60_000
            for _ in range(400):
                if not slow.say("guard-1", "s", text):
                    break
                await asyncio.sleep(0)
            answers = [await fast_session.call("guard-2", "wave", {}) for _ in range(20)]
            assert answers == ["ok"] * 20
            await eventually(lambda: not slow.connected, wait_s=10)
            assert slow.close_code == 1013
            assert await fast_session.call("guard-2", "wave", {}) == "ok"
        slow_ws.transport.abort()


# 16: event flood -> RATE_LIMITED, then 1008
async def test_16_event_flood() -> None:
    async with running(events_per_s=5, event_burst=5) as server:
        ws, _ = await handshake(server)
        session = await only_session(server)
        for _ in range(5):
            await ws.send(GOOD)
        await ws.send(GOOD)
        err = await recv_map(ws)
        assert (err["code"], err["retryable"]) == ("RATE_LIMITED", True)
        for _ in range(10):
            await ws.send(GOOD)
        assert await close_code(ws) == 1008
        got = []
        async with asyncio.timeout(2):
            async for msg in session.incoming():
                got.append(msg)
                if len(got) == 5:
                    break
        assert all(m.t == "event" for m in got)


# 17: a half-open peer is closed within ping interval + timeout
async def test_17_half_open_peer_closed() -> None:
    async with running(ping_interval_s=0.2, ping_timeout_s=0.2) as server:
        ws, _ = await handshake(server)
        session = await only_session(server)
        ws.transport.pause_reading()  # never sees the pings, never answers
        await eventually(lambda: not session.connected, wait_s=3)
        assert session.close_code == 1011
        ws.transport.abort()


# 18: handshake and hello refusals
async def test_18_bad_token_header_401() -> None:
    async with running(token="s3cret") as server:
        with pytest.raises(InvalidStatus) as info:
            await open_raw(server, headers={"Authorization": "Bearer wrong"})
        assert info.value.response.status_code == 401
        ws = await open_raw(server, headers={"Authorization": "Bearer s3cret"})
        await ws.send(pack(hello()))
        assert (await recv_map(ws))["t"] == "welcome"


async def test_18_no_token_closes_4001_token_in_hello_works() -> None:
    async with running(token="s3cret") as server:
        ws = await open_raw(server)
        await ws.send(pack(hello()))
        assert (await recv_map(ws))["code"] == "UNAUTHORIZED"
        assert await close_code(ws) == 4001
        ws = await open_raw(server)
        await ws.send(pack(hello(token="nope")))
        assert await close_code(ws) == 4001
        ws = await open_raw(server)
        await ws.send(pack(hello(token="s3cret")))
        assert (await recv_map(ws))["t"] == "welcome"


async def test_18_origin_and_subprotocol() -> None:
    async with running(allowed_origins=("https://game.example",)) as server:
        with pytest.raises(InvalidStatus) as info:
            await open_raw(server, origin="https://evil.example")
        assert info.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as info:
            await open_raw(server, subprotocols=[])
        assert info.value.response.status_code == 400
        ws = await open_raw(server, origin="https://game.example")
        assert ws.subprotocol == "npc-bridge.v1"
        await ws.close()


async def test_18_no_hello_in_time_and_bad_version() -> None:
    async with running(hello_timeout_s=0.2) as server:
        ws = await open_raw(server)
        assert await close_code(ws) == 1008
        ws = await open_raw(server)
        await ws.send(pack(hello(proto=2)))
        assert (await recv_map(ws))["code"] == "UNSUPPORTED_VERSION"
        assert await close_code(ws) == 4003
        ws = await open_raw(server)
        await ws.send(GOOD)  # anything but hello first
        assert await close_code(ws) == 1008


# 19: a second connection for a session: newest wins, old closed 4009
async def test_19_newest_connection_wins() -> None:
    async with running() as server:
        old, welcome = await handshake(server)
        session = await only_session(server)
        new, welcome2 = await handshake(server, resume=welcome["resume_token"])
        assert welcome2["session"] == welcome["session"]
        assert await close_code(old) == 4009
        task = asyncio.create_task(session.call("guard-1", "look", {}))
        call = await recv_map(new)
        await new.send(pack({"t": "result", "id": call["id"], "ok": True, "data": 7}))
        assert await task == 7
        assert session.connected


# 20: random garbage on the wire: a documented error or close code, never a crash
async def test_20_fuzz_frames_against_server() -> None:
    rng = random.Random(20)
    documented = {1003, 1007, 1008, 1009}
    async with running(max_frame_bytes=4096) as server:
        for i in range(40):
            ws, _ = await handshake(server, game=f"fuzz{i}")
            kind = rng.randrange(3)
            if kind == 0:
                frame = rng.randbytes(rng.randrange(1, 64))
            elif kind == 1:
                mutable = bytearray(GOOD)
                for _ in range(rng.randrange(1, 4)):
                    mutable[rng.randrange(len(mutable))] = rng.randrange(256)
                frame = bytes(mutable)
            else:
                frame = struct.pack(">B", 0x80 | rng.randrange(16)) + rng.randbytes(20)
            await ws.send(frame)
            await ws.send(pack({"t": "result", "id": "probe", "ok": True}))
            try:
                reply = await recv_map(ws, wait_s=1)
                assert reply["t"] == "error"
                assert reply["code"] in {
                    "MALFORMED",
                    "BAD_INPUT",
                    "UNKNOWN_TYPE",
                    "UNKNOWN_NPC",
                    "RATE_LIMITED",
                }
            except (TimeoutError, Exception):
                pass
            await ws.close()
            rcvd = ws.protocol.close_rcvd
            assert rcvd is None or rcvd.code in documented | {1000}
        ws, _ = await handshake(server, game="after")
        await ws.close()
