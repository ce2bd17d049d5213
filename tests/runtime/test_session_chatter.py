"""NPC-to-NPC conversations are bounded: after `limits.npc_replies` turns answering only
other NPCs, NPC speech becomes context until someone else speaks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from runtime.project import Project
from runtime.session import NpcSession, Perception
from runtime.store import MemoryStore
from tests.runtime.scripted import FakeLink, Reply, ScriptedModel, eventually, make_project


@pytest.fixture
def project(tmp_path: Path) -> Project:
    built: Project = make_project(tmp_path / "project")
    return built


@pytest_asyncio.fixture
async def model() -> AsyncIterator[ScriptedModel]:
    async with ScriptedModel([Reply("Indeed.")]) as scripted:
        yield scripted


def heard(speaker: str, text: str) -> Perception:
    return Perception("heard", {"speaker": speaker, "text": text})


@pytest.mark.asyncio
async def test_npc_replies_stop_after_the_limit_and_resume_when_a_player_speaks(
    project: Project, model: ScriptedModel
) -> None:
    model.script = lambda body: Reply("Indeed.")
    limits = project.config.limits.model_copy(update={"npc_replies": 2})
    store = MemoryStore()
    link = FakeLink()
    session = NpcSession(
        "t1",
        project.characters["tester"],
        project.registry,
        model.client(),
        store,
        limits,
        link=link,
        is_npc=lambda speaker: speaker.startswith("npc-"),
    )
    session.start()
    try:
        for n in range(1, 3):
            session.perceive(heard("npc-bob", f"line {n}"))
            await eventually(lambda: len(store.turns) == n)  # noqa: B023 - awaited here
        # The third line from an NPC is context, not a turn; the game hears "idle" again, so
        # whatever waits for this NPC's reaction knows none is coming.
        before = len(link.states)
        session.perceive(heard("npc-bob", "line 3"))
        session.perceive(heard("npc-bob", "line 4"))
        assert link.states[before:] == ["idle", "idle"]
        assert len(store.turns) == 2
        assert session.npc_replies == 2
        # A player speaks: a turn that also sees what the NPC said meanwhile.
        session.perceive(heard("player", "hello"))
        await eventually(lambda: len(store.turns) == 3)
        prompt = model.requests[-1]["messages"][0]["content"]
        assert 'npc-bob says: "line 3"' in prompt
        assert 'npc-bob says: "line 4"' in prompt
        assert session.npc_replies == 0
        # ... and NPC speech starts turns again.
        session.perceive(heard("npc-bob", "line 5"))
        await eventually(lambda: len(store.turns) == 4)
    finally:
        await session.close()
