"""The live viewer: one page on loopback that shows a run as it happens (docs/viewer.md).

Why a feed of records and not a second bridge connection: everything worth showing is
already a record. In ``npc sim`` every record of the transcript (perceptions, calls,
results, lines, statuses, world notes, the runtime's turns) passes through
``TranscriptWriter.write``; the CLI hands each one to :meth:`LiveFeed.push` as well. What
the transcript lacks for a moving picture (where everyone is *between* arrivals) a
:class:`SimTap` adds: ``scene`` (the map) and ``tick`` (positions, holdings, gates) records
read from the world a few times a second. In ``npc serve`` there is no world; a
:class:`ServeTap` sits between the bridge server and the runtime and turns what the runtime
sends to games (calls, speech, statuses) and what games send (spawns, events) into the same
kinds of records.

The page reads ``GET /feed``, a Server-Sent-Events stream: ``id: N`` + ``data: <record JSON>``
per record, replayed from the start (or from ``Last-Event-ID`` after a reconnect, which
``EventSource`` does by itself), then live. A tiny HTTP/1.1 server on asyncio streams serves
it: no dependency, no thread, no file outside ``sim/live/``. Loopback only; the ``Host``
header must name loopback (DNS rebinding); the page may load nothing from elsewhere (CSP).

Bounded everything: the feed keeps the last ``max_records`` encoded records (a page that
connects later gets the retained ``scene``/``spawn`` records first); each page has a bounded
queue, and a page that falls behind is disconnected and catches up by reconnecting.

Exceptions: none of its own. Bad HTTP requests get 400/404/405; a page that goes away is
forgotten; a record that cannot be JSON is sanitised.

The parts, one concept each: ``sim._live_feed`` (the feed), ``sim._live_http`` (the HTTP
server) and ``sim._live_taps`` (``SimTap``, ``ServeTap``); this module is the public face.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sim._live_feed import LiveFeed
from sim._live_http import PAGE as PAGE  # noqa: PLC0414 (re-export)
from sim._live_http import LiveServer
from sim._live_taps import ServeTap, SimTap

__all__ = ["LiveFeed", "LiveServer", "ServeTap", "SimTap", "start_viewer"]

log = logging.getLogger("sim.live")


async def start_viewer(
    port: int, *, mode: str, title: str, clock: Callable[[], float] | None = None
) -> LiveServer:
    """A started :class:`LiveServer` on ``127.0.0.1:port`` (0: any free port) with its feed."""
    if clock is None:
        start = time.monotonic()

        def clock() -> float:
            return time.monotonic() - start

    server = LiveServer(LiveFeed(clock=clock), port=port, mode=mode, title=title)
    await server.start()
    return server
