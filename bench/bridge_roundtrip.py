"""Bridge call round trip vs a bare websockets + msgpack echo, measured in the same run.

    .venv/bin/python bench/bridge_roundtrip.py [--calls 20000] [--inflight 256] [--rounds 5]

The measuring side runs in this process; the peer (the GameClient answering
calls, or the bare echo server) runs in a subprocess, so each side has its own
core, as a game and the runtime would. Reported: p50/p99 of sequential round
trips, CPU per sequential call of the measuring side (``process_time``) and of
the peer (``/proc/<pid>/stat``), and round trips per second with ``--inflight``
outstanding, for both, and their ratios (design.md 6: p50 <= 1.3x bare,
>= 30k calls/s pipelined). Rounds alternate bare and bridge; medians are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# Import the working tree's packages even when the venv's editable install is stale.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

from bridge import BridgeConfig, BridgeServer, Call, GameClient, Session

ARGS = {"x": 12.5, "z": -3.0}
CALL = {
    "t": "call",
    "id": "ab-1f",
    "npc": "guard-1",
    "cap": "goToLocation",
    "args": ARGS,
    "mode": "call",
    "deadline_ms": 30000,
}


# ----------------------------------------------------------------- peers (subprocess side)


def _same_read_size(transport: Any) -> None:
    """Give the bare echo the read size the bridge uses (see bridge._transport).

    asyncio reads with recv(256 KiB); whether that costs mmap + mremap + munmap per
    read depends on glibc's dynamic mmap threshold, i.e. on the process's allocation
    history, so without this the bare baseline was randomly 10-20 us slower or not.
    The ratio is meant to measure the bridge's work, not that accident.
    """
    transport.max_size = 64 * 1024


async def _echo_peer() -> None:
    async def echo(ws: ServerConnection) -> None:
        _same_read_size(ws.transport)
        async for msg in ws:
            await ws.send(msg)

    async with serve(echo, "127.0.0.1", 0, compression=None, max_size=2**16) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()


async def _bridge_peer(url: str) -> None:
    game = GameClient(
        url,
        game="bench",
        npcs=[("guard-1", "guard")],
        capabilities=["goToLocation"],
        eager_handlers=os.environ.get("BENCH_EAGER", "1") == "1",
    )

    @game.handle("goToLocation")
    async def go(call: Call) -> dict[str, Any]:
        return {"arrived": True}

    async with game:
        await asyncio.Future()


# ----------------------------------------------------------------- measuring side


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pcts(samples: list[float]) -> tuple[float, float]:
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


class _Bare:
    """The baseline: send the call map packed, await the echo, unpack it."""

    def __init__(self, ws: ClientConnection, pid: int) -> None:
        self.ws, self.pid = ws, pid

    async def one(self) -> None:
        await self.ws.send(msgpack.packb(CALL))
        msgpack.unpackb(await self.ws.recv())

    async def pipelined(self, n: int, inflight: int) -> float:
        ws = self.ws
        sem = asyncio.Semaphore(inflight)

        async def reader() -> None:
            for _ in range(n):
                msgpack.unpackb(await ws.recv())
                sem.release()

        t0 = time.perf_counter()
        task = asyncio.create_task(reader())
        for _ in range(n):
            await sem.acquire()
            await ws.send(msgpack.packb(CALL))
        await task
        return n / (time.perf_counter() - t0)


class _Bridge:
    """A capability call through BridgeServer -> GameClient -> result -> the caller."""

    def __init__(self, session: Session, pid: int) -> None:
        self.session, self.pid = session, pid

    async def one(self) -> None:
        await self.session.call("guard-1", "goToLocation", ARGS)

    async def pipelined(self, n: int, inflight: int) -> float:
        # ``inflight`` callers (think NPCs), each making its calls one after another.
        per_worker = n // inflight

        async def worker() -> None:
            for _ in range(per_worker):
                await self.session.call("guard-1", "goToLocation", ARGS)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        return per_worker * inflight / (time.perf_counter() - t0)


class _Samples:
    def __init__(self) -> None:
        self.lat: list[float] = []
        self.cpu = 0.0
        self.peer_cpu = 0.0
        self.rates: list[float] = []
        self.round_p50: list[float] = []


async def _block(side: _Bare | _Bridge, calls: int, out: _Samples) -> None:
    lat = []
    cpu0, peer0 = time.process_time(), _proc_cpu(side.pid)
    for _ in range(calls):
        t0 = time.perf_counter()
        await side.one()
        lat.append(time.perf_counter() - t0)
    out.cpu += time.process_time() - cpu0
    out.peer_cpu += _proc_cpu(side.pid) - peer0
    out.lat.extend(lat)


async def _measure(
    sides: dict[str, _Bare | _Bridge], n: int, inflight: int, rounds: int, block: int
) -> dict[str, _Samples]:
    """Interleave the two sides in blocks of ``block`` calls so both see the same load.

    The machine is shared: whole rounds run seconds apart saw p50 ratios from 0.8x
    to 1.9x. Alternating every few milliseconds (and which side goes first) makes
    both sides sample the same moments.
    """
    out = {name: _Samples() for name in sides}
    names = list(sides)
    for name in names:  # warm up: connections, caches, the call-id counter
        for _ in range(500):
            await sides[name].one()
    per_round = max(block, n // rounds)
    for r in range(rounds):
        start = {name: len(out[name].lat) for name in names}
        for b in range(per_round // block):
            order = names if (b + r) % 2 == 0 else names[::-1]
            for name in order:
                await _block(sides[name], block, out[name])
        for name in names:
            out[name].round_p50.append(statistics.median(out[name].lat[start[name] :]))
        for name in order:
            out[name].rates.append(await sides[name].pipelined(n, inflight))
    return out


async def _main(n: int, inflight: int, rounds: int, block: int) -> None:
    opened: asyncio.Queue[Session] = asyncio.Queue()

    class Handler:
        def missing_capabilities(self, hello: Any) -> list[str]:
            return []

        async def session_opened(self, session: Session) -> None:
            opened.put_nowait(session)

        async def session_closed(self, session: Session) -> None:
            return None

    config = BridgeConfig(port=0, max_in_flight=max(inflight, 256))
    async with BridgeServer(config, Handler()) as server:
        game = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--peer", "bridge", server.url
        )
        echo = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--peer", "echo", "-", stdout=asyncio.subprocess.PIPE
        )
        try:
            session = await asyncio.wait_for(opened.get(), 20)
            assert echo.stdout is not None
            port = int(await asyncio.wait_for(echo.stdout.readline(), 20))
            async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
                _same_read_size(ws.transport)
                sides: dict[str, _Bare | _Bridge] = {
                    "bare": _Bare(ws, echo.pid),
                    "bridge": _Bridge(session, game.pid),
                }
                res = await _measure(sides, n, inflight, rounds, block)
        finally:
            for proc in (game, echo):
                proc.terminate()
                await proc.wait()
    _report(res, n, inflight, rounds)


def _report(res: dict[str, _Samples], n: int, inflight: int, rounds: int) -> None:
    rows = {}
    for name, s in res.items():
        p50, p99 = _pcts(s.lat)
        count = len(s.lat)
        rows[name] = {
            "p50_us": p50 * 1e6,
            "p99_us": p99 * 1e6,
            "cpu_us": s.cpu / count * 1e6,
            "peer_cpu_us": s.peer_cpu / count * 1e6,
            "per_s": statistics.median(s.rates),
        }
    bare, ours = rows["bare"], rows["bridge"]
    head = f"{len(res['bare'].lat)} calls each"
    print(f"{head:26}{'p50 us':>10}{'p99 us':>10}{'CPU us':>10}{'peer CPU':>10}{'calls/s':>12}")
    for name, r in (("bare websockets echo", bare), ("bridge call (GameClient)", ours)):
        print(
            f"{name:26}{r['p50_us']:>10.0f}{r['p99_us']:>10.0f}{r['cpu_us']:>10.1f}"
            f"{r['peer_cpu_us']:>10.1f}{r['per_s']:>12,.0f}"
        )
    print(
        f"ratio bridge/bare: p50 {ours['p50_us'] / bare['p50_us']:.2f}x, "
        f"p99 {ours['p99_us'] / bare['p99_us']:.2f}x, "
        f"caller CPU {ours['cpu_us'] / bare['cpu_us']:.2f}x, "
        f"peer CPU {ours['peer_cpu_us'] / bare['peer_cpu_us']:.2f}x, "
        f"pipelined throughput {ours['per_s'] / bare['per_s']:.2f}x "
        f"(sequential calls interleaved in blocks; pipelined: median of {rounds} runs "
        f"of {n} calls, {inflight} in flight)"
    )
    b, o = res["bare"], res["bridge"]
    print(
        "per round, bridge/bare p50: "
        + " ".join(f"{x / y:.2f}x" for x, y in zip(o.round_p50, b.round_p50, strict=True))
        + "; bridge calls/s: "
        + " ".join(f"{x:,.0f}" for x in o.rates)
        + "; bare msgs/s: "
        + " ".join(f"{x:,.0f}" for x in b.rates)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--inflight", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=int, default=100, help="calls per interleaved block")
    parser.add_argument("--peer", nargs=2, metavar=("KIND", "ARG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        kind, arg = args.peer
        runner = _echo_peer() if kind == "echo" else _bridge_peer(arg)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(runner)
        return
    asyncio.run(_main(args.calls, args.inflight, args.rounds, args.block))


if __name__ == "__main__":
    main()
