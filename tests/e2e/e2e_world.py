"""The end-to-end harness: a scripted model endpoint on loopback, the Runtime behind a real
BridgeServer (port 0), and a GameClient game connected over a real websocket.

The ``world`` fixture (conftest.py) yields a :class:`World`; tests script the model, register
game handlers and push events; every frame the game receives is kept in ``world.frames``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge import BridgeConfig, BridgeServer, GameClient, Message
from runtime.project import Project
from runtime.runtime import Runtime
from runtime.store import MemoryStore, Store
from tests.runtime.scripted import Reply, ScriptedModel, eventually

GAME_CAPS = ("goToLocation", "openGate", "slowAction", "pickUp", "shout")


@dataclass
class World:
    project: Project
    model: ScriptedModel
    runtime: Runtime
    server: BridgeServer
    store: Store
    games: list[GameClient] = field(default_factory=list)
    frames: list[Message] = field(default_factory=list)

    @property
    def game(self) -> GameClient:
        return self.games[0]

    async def connect(
        self,
        npcs: Sequence[tuple[str, str]] = (("t1", "tester"),),
        capabilities: Iterable[str] = GAME_CAPS,
        **kwargs: Any,
    ) -> GameClient:
        kwargs.setdefault("backoff_s", (0.01, 0.05))
        game = GameClient(
            self.server.url, capabilities=list(capabilities), npcs=list(npcs), **kwargs
        )
        game.on_message(self.frames.append)
        self.games.append(game)
        await game.connect()
        wanted = {npc for npc, _ in npcs}
        await eventually(lambda: wanted <= set(self.runtime.sessions))
        return game

    def of(self, t: str, npc: str | None = None) -> list[Any]:
        return [
            f for f in self.frames if f.t == t and (npc is None or getattr(f, "npc", None) == npc)
        ]

    def speech(self, npc: str = "t1") -> str:
        return "".join(f.text for f in self.of("say", npc))

    async def idle(self, npc: str = "t1", count: int = 1) -> None:
        """Wait for the ``count``-th ``status idle`` of ``npc`` (the end of a turn)."""
        await eventually(
            lambda: sum(1 for f in self.of("status", npc) if f.state == "idle") >= count
        )


@contextlib.asynccontextmanager
async def open_world(
    project: Project,
    script: Any = (),
    *,
    store: Store | None = None,
    bridge: BridgeConfig | None = None,
) -> AsyncIterator[World]:
    async with ScriptedModel(list(script) or [Reply("...")]) as model:
        used = store if store is not None else MemoryStore()
        runtime = Runtime(project, store=used, model_client=model.factory)
        async with runtime, BridgeServer(bridge or BridgeConfig(port=0), runtime) as server:
            world = World(project, model, runtime, server, used)
            try:
                yield world
            finally:
                for game in world.games:
                    await game.close()
