"""sim.live without a browser: the SSE feed (replay, Last-Event-ID, bounded ring with the
sticky records, a page that falls behind), the HTTP edges (loopback Host only, 404/405/400),
and records pushed from another thread."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx2
import pytest

from sim.live import LiveFeed, LiveServer


async def _raw(server: LiveServer, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def _events(server: LiveServer, n: int, headers: dict[str, str] | None = None) -> list[Any]:
    """The first ``n`` data records of a fresh /feed connection (the `live` hello included)."""
    out: list[Any] = []
    async with (
        httpx2.AsyncClient(timeout=5) as client,
        client.stream("GET", server.url + "feed", headers=headers) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        async for line in resp.aiter_lines():
            if line.startswith("id: "):
                event["id"] = int(line[4:])
            elif line.startswith("data: "):
                event["data"] = json.loads(line[6:])
            elif line == "" and event:
                out.append(event)
                event = {}
                if len(out) == n:
                    break
    return out


@pytest.mark.asyncio
async def test_feed_replays_then_streams_live_records() -> None:
    feed = LiveFeed(clock=lambda: 1.5)
    async with LiveServer(feed, port=0, title="t") as server:
        feed.push({"type": "scene", "scenario": "a"})
        feed.push({"type": "status", "npc": "g", "state": "thinking", "t": 0.25})
        reading = asyncio.ensure_future(_events(server, 4))
        await asyncio.sleep(0.2)
        feed.push({"type": "line", "npc": "g", "text": "Halt! ✓", "bad": float("nan")})
        events = await reading
    hello, scene, status, line = events
    assert hello == {"data": {"type": "live", "mode": "sim", "title": "t", "after": 0}}
    assert scene["id"] == 1
    assert scene["data"] == {"type": "scene", "scenario": "a", "t": 1.5}
    assert status["data"]["t"] == 0.25
    assert line["id"] == 3
    assert line["data"]["text"] == "Halt! ✓"
    assert line["data"]["bad"] == "nan"


@pytest.mark.asyncio
async def test_last_event_id_resumes_and_a_trimmed_ring_keeps_sticky_records() -> None:
    feed = LiveFeed(max_records=3)
    async with LiveServer(feed, port=0) as server:
        feed.push({"type": "scene", "scenario": "a"})  # 1, sticky
        feed.push({"type": "spawn", "npc": "g", "character": "guard"})  # 2, sticky
        feed.push({"type": "spawn", "npc": "gone", "character": "guard"})  # 3
        feed.push({"type": "despawn", "npc": "gone"})  # 4
        for i in range(5, 8):
            feed.push({"type": "tick", "n": i})
        resumed = await _events(server, 3, {"Last-Event-ID": "5"})
        fresh = await _events(server, 6)
    assert [e.get("id") for e in resumed] == [None, 6, 7]
    assert resumed[0]["data"]["after"] == 5
    # ids 1..4 fell out of the ring: the scene and the live spawn come first, not "gone"
    assert [e.get("id") for e in fresh] == [None, 1, 2, 5, 6, 7]


@pytest.mark.asyncio
async def test_http_edges() -> None:
    feed = LiveFeed()
    async with LiveServer(feed, port=0) as server:
        ok = await _raw(server, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 ")
        assert b"Content-Security-Policy: default-src 'none'" in ok
        assert b"<title>npc live</title>" in ok
        rebound = await _raw(server, b"GET / HTTP/1.1\r\nHost: evil.example:80\r\n\r\n")
        assert rebound.startswith(b"HTTP/1.1 403 ")
        missing = await _raw(server, b"GET /etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert missing.startswith(b"HTTP/1.1 404 ")
        post = await _raw(server, b"POST / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert post.startswith(b"HTTP/1.1 405 ")
        garbage = await _raw(server, b"\x00\xff nonsense\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 ")
        head = await _raw(server, b"HEAD / HTTP/1.1\r\nHost: [::1]\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert head.endswith(b"\r\n\r\n")
        info = await _raw(server, b"GET /info HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert json.loads(info.split(b"\r\n\r\n", 1)[1])["mode"] == "sim"
        # a client that never finishes its request line does not hold anything up
        _reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET / HTT")
        await writer.drain()
        assert (await _raw(server, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"))[:12] == (
            b"HTTP/1.1 200"
        )
        writer.close()


@pytest.mark.asyncio
async def test_a_page_that_falls_behind_is_dropped_and_can_reconnect() -> None:
    feed = LiveFeed()
    sub = feed.subscribe(0, limit=3)
    for i in range(5):
        feed.push({"type": "tick", "n": i})
    assert sub.lagging
    assert sub.queue.qsize() == 3
    feed.unsubscribe(sub)
    assert feed.subscribers == 0
    again = feed.subscribe(3)
    assert again.queue.qsize() == 2  # ids 4 and 5


@pytest.mark.asyncio
async def test_push_from_another_thread_lands_on_the_loop() -> None:
    feed = LiveFeed()
    feed.bind(asyncio.get_running_loop())
    sub = feed.subscribe(0)
    thread = threading.Thread(target=feed.push, args=({"type": "turn", "npc": "g"},))
    thread.start()
    thread.join()
    frame = await asyncio.wait_for(sub.queue.get(), 2)
    assert b'"type":"turn"' in frame
    assert frame.startswith(b"id: 1\n")
