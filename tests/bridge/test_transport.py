"""The synchronous frame path (bridge._transport): order, fragments, batching, backpressure.

Frames are handled in the protocol callback only when nothing is queued for the
stock reader; these tests pin the cases where both paths meet.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge import Call, Event, GameClient, Spawn
from bridge._transport import SinkClientConnection, SinkServerConnection
from tests.bridge.bridge_helpers import (
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


async def test_frames_sent_right_after_hello_keep_their_order() -> None:
    """Spawn and event sent before the welcome is read: queued for the reader, then the
    callback path; the event must see the spawned NPC (order kept across the switch)."""
    async with running() as server:
        ws = await open_raw(server)
        frames = [pack(hello())]
        for i in range(50):
            frames.append(pack({"t": "spawn", "npc": f"n{i}", "character": "guard"}))
            frames.append(
                pack({"t": "event", "npc": f"n{i}", "kind": "saw", "data": {"what": str(i)}})
            )
        for frame in frames:
            await ws.send(frame)
        welcome = await recv_map(ws)
        assert welcome["t"] == "welcome"
        session = await only_session(server)
        got: list[Any] = []
        async with asyncio.timeout(5):
            async for msg in session.incoming():
                got.append(msg)
                if len(got) == 100:
                    break
        assert [type(m) for m in got] == [Spawn, Event] * 50
        assert [m.npc for m in got] == [f"n{i // 2}" for i in range(100)]
        await ws.close()


async def test_fragmented_and_text_frames_still_take_the_stock_path() -> None:
    """A result sent in fragments is assembled by websockets and accepted; a normal frame
    after it is handled after it; a text frame after that still closes 1003."""
    async with running() as server:
        ws, _ = await handshake(server)
        session = await only_session(server)
        assert session._link is not None
        assert isinstance(session._link.ws, SinkServerConnection)
        first = asyncio.ensure_future(session.call("guard-1", "goToLocation", {"x": 1}))
        second = asyncio.ensure_future(session.call("guard-1", "goToLocation", {"x": 2}))
        call1, call2 = await recv_map(ws), await recv_map(ws)
        frame = pack({"t": "result", "id": call1["id"], "ok": True, "data": {"n": 1}})
        await ws.send([frame[:5], frame[5:9], frame[9:]])  # three fragments
        await ws.send(pack({"t": "result", "id": call2["id"], "ok": True, "data": {"n": 2}}))
        assert await first == {"n": 1}
        assert await second == {"n": 2}
        await ws.send('{"t": "event"}')
        await ws.wait_closed()
        assert ws.protocol.close_rcvd is not None
        assert ws.protocol.close_rcvd.code == 1003


async def test_many_calls_in_flight_are_all_answered_by_id() -> None:
    """Pipelining: results of one TCP read leave in one write; each caller gets its own."""
    async with running(max_in_flight=512) as server:
        game = GameClient(server.url, npcs=[("guard-1", "guard")])

        @game.handle("echo")
        async def echo(call: Call) -> dict[str, Any]:
            return dict(call.args)

        @game.handle("later")
        async def later(call: Call) -> dict[str, Any]:
            await asyncio.sleep(0.001 * (call.args["i"] % 5))
            return dict(call.args)

        async with game:
            session = await only_session(server)
            assert isinstance(game._ws, SinkClientConnection)
            calls = [
                session.call("guard-1", "echo" if i % 2 else "later", {"i": i}) for i in range(400)
            ]
            results = await asyncio.gather(*calls)
            assert results == [{"i": i} for i in range(400)]
            assert game.executions == 400
            assert session.in_flight == 0


async def test_results_wait_for_a_runtime_that_stopped_reading() -> None:
    """The game's transport pauses when the runtime stops reading: results queue for the
    sender task (websockets flow control) and all arrive once the runtime reads again."""
    async with running(max_in_flight=512) as server:
        game = GameClient(server.url, npcs=[("guard-1", "guard")], eager_handlers=True)
        blob = "x" * 60_000  # ~60 KB per result: the socket buffers fill after a few dozen

        @game.handle("big")
        async def big(call: Call) -> dict[str, Any]:
            return {"i": call.args["i"], "blob": blob}

        async with game:
            session = await only_session(server)
            link = session._link
            assert link is not None
            link.ws.transport.pause_reading()
            tasks = [
                asyncio.ensure_future(session.call("guard-1", "big", {"i": i})) for i in range(300)
            ]
            await eventually(lambda: game.executions == 300)
            await eventually(lambda: game._backlog_task is not None)
            assert not any(t.done() for t in tasks)
            link.ws.transport.resume_reading()
            results = await asyncio.gather(*tasks)
            assert [r["i"] for r in results] == list(range(300))
            assert all(r["blob"] == blob for r in results)
            await eventually(lambda: game._backlog_task is None and not game._backlog)


@pytest.mark.asyncio
@pytest.mark.parametrize("eager", [False, True])
async def test_handlers_in_either_mode_answer_and_default_mode_runs_them_in_a_task(
    eager: bool,
) -> None:
    """By default a handler runs whole in its own task, so ``asyncio.timeout()`` works from
    its first line; eager handlers start in the reader and answer the same."""
    async with running() as server:
        game = GameClient(server.url, npcs=[("guard-1", "guard")], eager_handlers=eager)
        seen: list[bool] = []

        @game.handle("timed")
        async def timed(call: Call) -> dict[str, Any]:
            seen.append(asyncio.current_task() is not None)
            if not eager:
                async with asyncio.timeout(5):
                    await asyncio.sleep(0)
            return {"n": call.args["n"]}

        async with game:
            session = await only_session(server)
            results = await asyncio.gather(
                *(session.call("guard-1", "timed", {"n": n}) for n in range(20))
            )
    assert [r["n"] for r in results] == list(range(20))
    assert seen == [not eager] * 20


@pytest.mark.asyncio
async def test_a_client_that_keeps_tcp_open_after_the_closing_handshake_is_cut_on_time() -> None:
    """mono's ClientWebSocket completes the closing handshake, then waits for the server to
    close TCP while the server (half-closed) waits for it: the server aborts at close_timeout
    so the session ends, instead of hanging until a keepalive timeout."""
    from websockets.client import ClientProtocol
    from websockets.uri import parse_uri

    from tests.bridge.bridge_helpers import hello, pack

    async with running(close_timeout_s=0.3, resume_window_s=0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        protocol = ClientProtocol(parse_uri(server.url), subprotocols=["npc-bridge.v1"])  # type: ignore[list-item]
        protocol.send_request(protocol.connect())

        async def pump() -> None:
            for chunk in protocol.data_to_send():
                writer.write(chunk)
            await writer.drain()

        await pump()
        while protocol.handshake_exc is None and not protocol.events_received():
            data = await asyncio.wait_for(reader.read(65536), 5)
            protocol.receive_data(data)
            if protocol.state.name == "OPEN":
                break
        protocol.send_binary(pack(hello()))
        await pump()
        session = await only_session(server)
        protocol.send_close(1000, "bye")
        await pump()  # close frame out; the socket stays open on our side
        await asyncio.wait_for(session.wait_ended(), 5)
        assert session.close_code == 1000
        # The server ended the TCP connection: reading reaches EOF without our closing it.
        while await asyncio.wait_for(reader.read(65536), 5):
            pass
        writer.close()
