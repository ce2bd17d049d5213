"""How many streamed completions per CPU second the offline model serves.

Target (issue 6): >= 5,000 streamed completions per second of CPU, so the offline model is
never the bottleneck of a simulation. Three paths, on the sample village's characters and tools,
with a mix of requests that hits every branch of the policy (designer rule with a call, rule
with a line, schema-driven line or call, acknowledgement of a tool result):

- ``asgi``: the app called directly with ASGI messages (the model's own cost);
- ``httpx2``: through ``httpx2.AsyncClient`` + ``httpx2.ASGITransport``, exactly what
  ``base_url = "offline"`` does in-process (adds the HTTP client's cost);
- ``asgi-40``: as ``asgi`` with a 40-message history in every request (the default
  history window), since the conversation digest grows with the history.

CPU time is ``time.process_time()`` (one core); requests are sequential. Run:
``.venv/bin/python bench/offline_model.py [--n 20000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx2

from runtime.offline import OFFLINE_BASE_URL, OfflineModel, offline_characters
from runtime.project import load_project

ROOT = Path(__file__).resolve().parents[1]


def _bodies(history: int) -> list[bytes]:
    project = load_project(ROOT / "samples" / "village")
    bodies: list[bytes] = []
    perceptions = ['player says: "oak"', 'player says: "let me in"', "player says: hello"]
    for cid in sorted(project.characters):
        tools = project.tools_for(cid).openai_tools()
        past: list[dict[str, Any]] = []
        for i in range(history):
            role = "user" if i % 2 == 0 else "assistant"
            past.append({"role": role, "content": f"earlier line {i} about the village square"})
        for i in range(8):
            for text in perceptions:
                messages = [*past, {"role": "user", "content": f"{text} {i}"}]
                body = {
                    "model": cid,
                    "messages": messages,
                    "tools": tools,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
                bodies.append(json.dumps(body).encode())
        call = {"id": "call_1", "type": "function", "function": {"name": "say", "arguments": "{}"}}
        after = [
            *past,
            {"role": "user", "content": "oak"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"ok":true}'},
        ]
        body = {"model": cid, "messages": after, "tools": tools, "stream": True}
        bodies.append(json.dumps(body).encode())
    return bodies


async def _direct(app: OfflineModel, bodies: list[bytes], n: int) -> tuple[int, int]:
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    total_bytes = 0
    sent: list[bytes] = []

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            sent.append(message["body"])

    for i in range(n):
        body = bodies[i % len(bodies)]

        async def receive(body: bytes = body) -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        await app(scope, receive, send)
        total_bytes += sum(len(b) for b in sent)
        sent.clear()
    return n, total_bytes


async def _through_httpx2(app: OfflineModel, bodies: list[bytes], n: int) -> tuple[int, int]:
    total_bytes = 0
    headers = {"content-type": "application/json"}
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app), base_url=OFFLINE_BASE_URL
    ) as client:
        for i in range(n):
            response = await client.post(
                "chat/completions", content=bodies[i % len(bodies)], headers=headers
            )
            total_bytes += len(response.content)
    return n, total_bytes


def _measure(
    name: str,
    run: Callable[[OfflineModel, list[bytes], int], Coroutine[Any, Any, tuple[int, int]]],
    bodies: list[bytes],
    n: int,
) -> dict[str, Any]:
    app = OfflineModel(offline_characters(load_project(ROOT / "samples" / "village")), seed=1)
    asyncio.run(run(app, bodies, min(n, 500)))  # warm-up
    cpu0, wall0 = time.process_time(), time.perf_counter()
    done, total = asyncio.run(run(app, bodies, n))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "path": name,
        "completions": done,
        "per_cpu_s": round(done / cpu),
        "us_cpu_each": round(cpu / done * 1e6, 1),
        "per_wall_s": round(done / wall),
        "avg_bytes": total // done,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="completions per path")
    args = parser.parse_args()
    short, long_ = _bodies(0), _bodies(40)
    rows = [
        _measure("asgi", _direct, short, args.n),
        _measure("httpx2", _through_httpx2, short, args.n),
        _measure("asgi-40", _direct, long_, args.n),
        _measure("httpx2-40", _through_httpx2, long_, args.n),
    ]
    print(f"{'path':<10} {'n':>7} {'per CPU s':>10} {'us CPU':>8} {'per wall s':>10} {'bytes':>6}")
    for r in rows:
        print(
            f"{r['path']:<10} {r['completions']:>7} {r['per_cpu_s']:>10} "
            f"{r['us_cpu_each']:>8} {r['per_wall_s']:>10} {r['avg_bytes']:>6}"
        )


if __name__ == "__main__":
    main()
