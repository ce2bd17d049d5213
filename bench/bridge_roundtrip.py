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
from websockets.asyncio.client import connect
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
    game = GameClient(url, game="bench", npcs=[("guard-1", "guard")], capabilities=["goToLocation"])

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


async def _bench_echo(port: int, pid: int, n: int, inflight: int) -> dict[str, float]:
    async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
        _same_read_size(ws.transport)
        lat = []
        for _ in range(200):
            await ws.send(msgpack.packb(CALL))
            msgpack.unpackb(await ws.recv())
        cpu0, peer0 = time.process_time(), _proc_cpu(pid)
        for _ in range(n):
            t0 = time.perf_counter()
            await ws.send(msgpack.packb(CALL))
            msgpack.unpackb(await ws.recv())
            lat.append(time.perf_counter() - t0)
        cpu = (time.process_time() - cpu0) / n
        peer_cpu = (_proc_cpu(pid) - peer0) / n
        p50, p99 = _pcts(lat)
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
        rate = n / (time.perf_counter() - t0)
    return _row(p50, p99, rate, cpu, peer_cpu)


def _row(p50: float, p99: float, rate: float, cpu: float, peer_cpu: float) -> dict[str, float]:
    return {
        "p50_us": p50 * 1e6,
        "p99_us": p99 * 1e6,
        "per_s": rate,
        "cpu_us": cpu * 1e6,
        "peer_cpu_us": peer_cpu * 1e6,
    }


async def _bench_bridge(n: int, inflight: int) -> dict[str, float]:
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
        peer = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--peer", "bridge", server.url
        )
        try:
            session = await asyncio.wait_for(opened.get(), 20)
            for _ in range(200):
                await session.call("guard-1", "goToLocation", ARGS)
            lat = []
            cpu0, peer0 = time.process_time(), _proc_cpu(peer.pid)
            for _ in range(n):
                t0 = time.perf_counter()
                await session.call("guard-1", "goToLocation", ARGS)
                lat.append(time.perf_counter() - t0)
            cpu = (time.process_time() - cpu0) / n
            peer_cpu = (_proc_cpu(peer.pid) - peer0) / n
            p50, p99 = _pcts(lat)
            # ``inflight`` callers (think NPCs), each making its calls one after another.
            per_worker = n // inflight

            async def worker() -> None:
                for _ in range(per_worker):
                    await session.call("guard-1", "goToLocation", ARGS)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(inflight)))
            rate = per_worker * inflight / (time.perf_counter() - t0)
        finally:
            peer.terminate()
            await peer.wait()
    return _row(p50, p99, rate, cpu, peer_cpu)


async def _bare(n: int, inflight: int) -> dict[str, float]:
    echo = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--peer", "echo", "-", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert echo.stdout is not None
        port = int(await asyncio.wait_for(echo.stdout.readline(), 20))
        return await _bench_echo(port, echo.pid, n, inflight)
    finally:
        echo.terminate()
        await echo.wait()


async def _main(n: int, inflight: int, rounds: int) -> None:
    # Rounds alternate bare and bridge so load from other processes hits both alike;
    # the medians over rounds are reported.
    results: dict[str, list[dict[str, float]]] = {"bare": [], "bridge": []}
    for _ in range(rounds):
        results["bare"].append(await _bare(n, inflight))
        results["bridge"].append(await _bench_bridge(n, inflight))
    med = {
        side: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        for side, rs in results.items()
    }
    bare, ours = med["bare"], med["bridge"]
    head = f"median of {rounds} rounds"
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
        f"({n} sequential calls, then {n} with {inflight} in flight, per round)"
    )
    pairs = list(zip(results["bare"], results["bridge"], strict=True))
    print(
        "per round, bridge/bare p50: "
        + " ".join(f"{o['p50_us'] / b['p50_us']:.2f}x" for b, o in pairs)
        + "; bridge calls/s: "
        + " ".join(f"{o['per_s']:,.0f}" for _, o in pairs)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--inflight", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--peer", nargs=2, metavar=("KIND", "ARG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        kind, arg = args.peer
        runner = _echo_peer() if kind == "echo" else _bridge_peer(arg)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(runner)
        return
    asyncio.run(_main(args.calls, args.inflight, args.rounds))


if __name__ == "__main__":
    main()
