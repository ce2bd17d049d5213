"""npcagent as a contestant of ../shared/tools/peerbench (see bench/README.md).

The same turn as every peer: the model streams one ``goToLocation`` call, the runtime
validates it with the registry and runs it (a runtime-executed capability calling
``common.go_to_location``), sends the result back as a ``role: tool`` message and streams the
final text. Each concurrent agent is an ``NpcSession`` taken from a pool, its history reset
to the benchmark's history before the turn (a copy of a prebuilt window, not a rebuild), and
every message is persisted to SQLite as in production.

The completions client is built as the runtime builds it for a URL with no injected HTTP
client: it talks over its native HTTP/1.1 path (``runtime/completions/_http.py``; set
``NPC_HTTP_CLIENT=httpx2`` to measure the httpx2 path instead). ``max_concurrency=1000``
matches the peers' pool limit, so only the client's CPU, not its semaphore, paces the burst.

Run: PEERBENCH_CONTESTANTS=$PWD/bench/peerbench PEERBENCH_VENV=$PWD/.venv \\
     ../shared/tools/peerbench/run.sh --contestants raw_httpx,raw_httpx2,npcagent
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from common import MODEL, SYSTEM_PROMPT, TOOL_DESCRIPTION, go_to_location  # type: ignore[import-not-found]
from contestants.base import Contestant  # type: ignore[import-not-found]

from capabilities import Registry, capability
from runtime.completions import CompletionsClient
from runtime.history import History
from runtime.project import Character, LimitSettings
from runtime.prompts import PromptBuilder
from runtime.session import NpcSession
from runtime.store import SQLiteStore


@capability(name="goToLocation", description=TOOL_DESCRIPTION, executor="runtime")
async def _go_to_location(x: float, z: float) -> dict[str, Any]:
    result: dict[str, Any] = go_to_location(x=x, z=z)
    return result


class NpcAgent(Contestant):  # type: ignore[misc]
    name = "npcagent"
    label = "npcagent NpcSession (stream, registry-validated runtime capability, SQLite)"

    async def start(self) -> None:
        self.client = CompletionsClient(self.base_url, "sk-mock", max_concurrency=1000)
        self.registry = Registry([_go_to_location.__npc_capability__])  # type: ignore[attr-defined]
        self.character = Character(
            id="bob", name="Bob", persona="A villager.", capabilities=["goToLocation"]
        )
        self.limits = LimitSettings(history_messages=10_000, history_tokens=10_000_000)
        self.prompt = PromptBuilder(self.character, template=SYSTEM_PROMPT)
        self._dir = tempfile.TemporaryDirectory()
        self.store = SQLiteStore(os.path.join(self._dir.name, "bench.sqlite3"))
        self.pool: list[NpcSession] = []
        self.base = History(self.limits.history_messages, self.limits.history_tokens)
        self._count = 0

    def set_history(self, history: list[dict[str, Any]]) -> None:
        self.base = History(self.limits.history_messages, self.limits.history_tokens, history)

    def _session(self) -> NpcSession:
        if self.pool:
            return self.pool.pop()
        self._count += 1
        return NpcSession(
            f"bob-{self._count}",
            self.character,
            self.registry,
            self.client,
            self.store,
            self.limits,
            prompt=self.prompt,
            request={"model": MODEL},
        )

    async def turn(self, user_text: str) -> str:
        session = self._session()
        session.history = self.base.copy()
        try:
            result = await session.run_turn(user_text)
        finally:
            self.pool.append(session)
        if result.outcome != "done":
            raise RuntimeError(f"turn {result.outcome}: {result.error}")
        return result.text

    async def close(self) -> None:
        await self.client.aclose()
        await self.store.close()
        self._dir.cleanup()

    @classmethod
    def versions(cls) -> dict[str, str]:
        import httpx2

        http = os.environ.get("NPC_HTTP_CLIENT", "native")
        return {"npcagent": "0.1.0", "http path": http, "httpx2": httpx2.__version__}


CONTESTANT = NpcAgent
