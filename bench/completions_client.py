"""CPU per streamed completion: the completions client (on its native HTTP path and on an
injected httpx2 client) vs a bare httpx2 loop (the floor).

All run in this process, on the same loopback mock (../shared/tools/peerbench/mock_endpoint.py,
started as a subprocess), in interleaved blocks, so each round's ratio compares like with like.
Scenarios: a text answer ("Arrived." in 5 chunks, after a tool result) and a tool-call answer
(goToLocation, arguments over 4 chunks), each with 0 and 200 prior history messages.

    .venv/bin/python bench/completions_client.py            # ~1 min
    .venv/bin/python bench/completions_client.py --quick    # smoke run

The floor is peerbench's raw_httpx2 contestant reduced to one request: ``client.stream`` +
``aiter_lines`` + ``json.loads`` + dict accumulation, no error handling.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2

from runtime.completions import CompletionsClient, TextDelta

PEERBENCH = Path(__file__).resolve().parents[1] / ".." / "shared" / "tools" / "peerbench"
MODEL = "gpt-4o-mini"
SYSTEM = "You are Bob, a villager NPC. Use tools to move."
TOOL = {
    "type": "function",
    "function": {
        "name": "goToLocation",
        "description": "Walk the NPC to world coordinates (x, z).",
        "parameters": {
            "type": "object",
            "properties": {"x": {"type": "number"}, "z": {"type": "number"}},
            "required": ["x", "z"],
            "additionalProperties": False,
        },
    },
}
LIMITS = {"max_connections": 1000, "max_keepalive_connections": 100}


def history(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        if i % 2 == 0:
            text = f"[{i}] Hey Bob, what do you think about the weather near the old mill today?"
            out.append({"role": "user", "content": text})
        else:
            text = f"[{i}] Cloudy, friend. The miller says rain is coming before the festival."
            out.append({"role": "assistant", "content": text})
    return out


def messages(n_history: int, answer: str) -> list[dict[str, Any]]:
    msgs = [{"role": "system", "content": SYSTEM}, *history(n_history)]
    msgs.append({"role": "user", "content": "Please walk to the well."})
    if answer == "text":
        call = {"id": "call_1", "type": "function",
                "function": {"name": "goToLocation", "arguments": '{"x":100,"z":200}'}}  # fmt: skip
        msgs.append({"role": "assistant", "content": None, "tool_calls": [call]})
        msgs.append({"role": "tool", "tool_call_id": "call_1", "content": '{"arrived": true}'})
    return msgs


class Floor:
    """Bare httpx2 with hand-written SSE parsing (peerbench's raw_httpx2, one request)."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx2.AsyncClient(
            timeout=60.0,
            limits=httpx2.Limits(**LIMITS),
            headers={"Authorization": "Bearer sk-mock"},
        )
        self.url = base_url + "/chat/completions"

    async def complete(self, msgs: list[dict[str, Any]]) -> tuple[str, list[tuple[str, str]]]:
        body = {"model": MODEL, "messages": msgs, "tools": [TOOL], "stream": True,
                "stream_options": {"include_usage": True}}  # fmt: skip
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        async with self.http.stream("POST", self.url, json=body) as r:
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}")
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    continue
                for ch in json.loads(data)["choices"]:
                    d = ch["delta"]
                    if d.get("content"):
                        text.append(d["content"])
                    for tc in d.get("tool_calls") or ():
                        slot = calls.get(tc["index"])
                        if slot is None:
                            slot = calls[tc["index"]] = {"name": "", "args": []}
                        fn = tc.get("function") or {}
                        if fn.get("name"):
                            slot["name"] = fn["name"]
                        if fn.get("arguments"):
                            slot["args"].append(fn["arguments"])
        return "".join(text), [(c["name"], "".join(c["args"])) for c in calls.values()]

    async def aclose(self) -> None:
        await self.http.aclose()


class Ours:
    """The completions client as the runtime uses it: iterate typed events, read the result.
    ``native``: its own HTTP/1.1 path (the default); else an injected httpx2 client."""

    def __init__(self, base_url: str, native: bool) -> None:
        self.name = "native" if native else "httpx2"
        http = None if native else httpx2.AsyncClient(limits=httpx2.Limits(**LIMITS))
        self.client = CompletionsClient(
            base_url, "sk-mock", model=MODEL, http=http, backend="native"
        )
        assert self.client.backend == self.name
        self.http = http

    async def complete(self, msgs: list[dict[str, Any]]) -> tuple[str, list[tuple[str, str]]]:
        text: list[str] = []
        async with self.client.stream({"messages": msgs, "tools": [TOOL]}) as stream:
            async for event in stream:
                if type(event) is TextDelta:
                    text.append(event.text)  # what the runtime forwards as speech
            choice = stream.completion.choice
        return "".join(text), [(c.name, c.arguments) for c in choice.tool_calls]

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.http is not None:
            await self.http.aclose()


EXPECTED = {"text": ("Arrived.", []), "tool": ("", [("goToLocation", '{"x": 100, "z": 200}')])}


async def block(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    """CPU seconds per call over n sequential calls."""
    start = time.process_time()
    for _ in range(n):
        await fn()
    return (time.process_time() - start) / n


async def scenario(
    floor: Floor, ours: list[Ours], n_history: int, answer: str, rounds: int, n: int
) -> dict[str, Any]:
    msgs = messages(n_history, answer)
    everyone: list[Floor | Ours] = [floor, *ours]
    for contestant in everyone:  # correctness and warm-up
        got = await contestant.complete(msgs)
        text, calls = got
        want_text, want_calls = EXPECTED[answer]
        norm = [(name, json.dumps(json.loads(args))) for name, args in calls]
        assert (text, norm) == (want_text, want_calls), (type(contestant).__name__, got)
        for _ in range(20):
            await contestant.complete(msgs)
    cpu: dict[str, list[float]] = {"floor": [], **{o.name: [] for o in ours}}
    ratios: dict[str, list[float]] = {o.name: [] for o in ours}
    for r in range(rounds):
        order = everyone[r % len(everyone) :] + everyone[: r % len(everyone)]
        result: dict[str, float] = {}
        for contestant in order:
            key = contestant.name if isinstance(contestant, Ours) else "floor"
            result[key] = await block(functools.partial(contestant.complete, msgs), n)
        for key, value in result.items():
            cpu[key].append(value)
        for o in ours:
            ratios[o.name].append(result[o.name] / result["floor"])
    out: dict[str, Any] = {
        "scenario": f"{answer} h{n_history}",
        "floor_us": statistics.median(cpu["floor"]) * 1e6,
    }
    for o in ours:
        out[o.name] = {
            "us": statistics.median(cpu[o.name]) * 1e6,
            "ratio": statistics.median(ratios[o.name]),
            "ratio_min": min(ratios[o.name]),
            "ratio_max": max(ratios[o.name]),
        }
    return out


def start_mock(gap_ms: float) -> tuple[subprocess.Popen[bytes], int]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    proc = subprocess.Popen(
        [sys.executable, str(PEERBENCH / "mock_endpoint.py"), "--port", "0",
         "--port-file", str(port_file), "--gap-ms", str(gap_ms)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("mock_endpoint.py did not start")
        time.sleep(0.02)
    return proc, int(port_file.read_text())


async def main_async(args: argparse.Namespace, port: int) -> list[dict[str, Any]]:
    base = f"http://127.0.0.1:{port}/v1"
    floor, ours = Floor(base), [Ours(base, native=True), Ours(base, native=False)]
    results = []
    try:
        for n_history in args.histories:
            for answer in ("text", "tool"):
                res = await scenario(floor, ours, n_history, answer, args.rounds, args.block)
                results.append(res)
                line = f"{res['scenario']:>10}: floor {res['floor_us']:6.0f} µs"
                for o in ours:
                    r = res[o.name]
                    line += (
                        f" | {o.name} {r['us']:6.0f} µs {r['ratio']:.3f}"
                        f" [{r['ratio_min']:.2f}..{r['ratio_max']:.2f}]"
                    )
                print(line, flush=True)
    finally:
        await floor.aclose()
        for o in ours:
            await o.aclose()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--block", type=int, default=100, help="completions per timed block")
    ap.add_argument("--histories", type=int, nargs="+", default=[0, 200])
    ap.add_argument("--gap-ms", type=float, default=0.0, help="mock pause between SSE events")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.block = 3, 30
    proc, port = start_mock(args.gap_ms)
    try:
        load = os.getloadavg()[0]
        print(
            f"python {sys.version.split()[0]}, httpx2 {httpx2.__version__}, "
            f"cpus {os.cpu_count()}, load {load:.2f}, gap {args.gap_ms} ms"
        )
        results = asyncio.run(main_async(args, port))
    finally:
        proc.terminate()
        proc.wait(5)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
