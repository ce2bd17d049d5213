"""Edges of the NPC loop: races between perceptions and the turn task, the history window
inside a turn, and the deferred (client-executed) tools of the character endpoint."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from runtime.project import LimitSettings, Project
from runtime.session import NpcSession, Perception
from runtime.store import MemoryStore
from tests.runtime.scripted import (
    FakeLink,
    Reply,
    ScriptedModel,
    call,
    eventually,
    make_project,
    tool_messages,
)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    built: Project = make_project(tmp_path / "project")
    return built


@pytest_asyncio.fixture
async def model() -> AsyncIterator[ScriptedModel]:
    async with ScriptedModel([Reply("unused")]) as scripted:
        yield scripted


def make_session(
    project: Project,
    model: ScriptedModel,
    link: FakeLink,
    store: MemoryStore,
    limits: LimitSettings | None = None,
    **kwargs: Any,
) -> NpcSession:
    return NpcSession(
        "t1",
        project.characters["tester"],
        project.registry,
        model.client(),
        store,
        limits or project.config.limits,
        link=link,
        **kwargs,
    )


@pytest.mark.asyncio
async def test_trigger_arriving_before_the_turn_task_starts(
    project: Project, model: ScriptedModel
) -> None:
    """The loop created the turn task but it has not run yet when the next trigger comes:
    the NPC must survive and answer both perceptions (in one turn or two)."""
    model.script = [Reply("Hello.")]
    store = MemoryStore()
    session = make_session(project, model, FakeLink(), store)
    loop_task = session.start()
    await asyncio.sleep(0)  # the loop waits for a trigger
    session.perceive(Perception("heard", {"speaker": "ann", "text": "one"}))
    await asyncio.sleep(0)  # the loop wakes and creates the turn task (not started yet)
    session.perceive(Perception("heard", {"speaker": "bob", "text": "two"}))
    await eventually(lambda: any('"two"' in str(r["messages"][1:]) for r in model.requests))
    await eventually(lambda: bool(store.turns) and store.turns[-1].outcome == "done")
    assert not loop_task.done()
    last = model.requests[-1]
    users = "\n".join(m["content"] for m in last["messages"] if m["role"] == "user")
    assert users == 'ann says: "one"\nbob says: "two"'
    # The NPC still answers later triggers.
    count = len(model.requests)
    session.perceive(Perception("heard", {"speaker": "cid", "text": "three"}))
    later = await model.wait_requests(count + 1)
    assert later["messages"][-1] == {"role": "user", "content": 'cid says: "three"'}
    await session.close()


@pytest.mark.asyncio
async def test_parallel_results_survive_a_tiny_history_window(
    project: Project, model: ScriptedModel
) -> None:
    """history_messages=2 and three parallel calls: the next request must still carry the
    assistant message with its tool calls before their results."""
    limits = project.config.limits.model_copy(update={"history_messages": 2})
    model.script = [
        Reply(calls=[call("openGate", {}, c) for c in ("a", "b", "c")]),
        Reply("Open."),
    ]
    session = make_session(project, model, FakeLink(), MemoryStore(), limits)
    result = await session.run_turn("open")
    assert result.outcome == "done"
    check_wellformed(model.requests[1]["messages"][1:])


@pytest.mark.asyncio
async def test_a_huge_tool_result_keeps_its_call(project: Project, model: ScriptedModel) -> None:
    """A result bigger than the whole token budget: the window keeps the call with it."""
    limits = project.config.limits.model_copy(update={"history_tokens": 100})
    model.script = [Reply(calls=[call("openGate", {}, "big")]), Reply("Heavy.")]
    link = FakeLink(handler=lambda c: {"log": "x" * 4000})
    session = make_session(project, model, link, MemoryStore(), limits)
    await session.run_turn("open")
    messages = model.requests[1]["messages"][1:]
    check_wellformed(messages)
    assert messages[-1]["role"] == "tool"


@pytest.mark.asyncio
async def test_deferred_turn_keeps_the_results_of_runtime_tools(
    project: Project, model: ScriptedModel
) -> None:
    """A deferred call and a runtime capability in one answer: the runtime one runs, and its
    result is in the history so the next request (with the client's results) is complete."""
    model.script = [
        Reply(
            calls=[
                call("goToLocation", {"x": 1, "z": 1}, "mine"),
                call("remember", {"fact": "ann was here"}, "own"),
            ]
        ),
        Reply("There."),
    ]
    store = MemoryStore()
    session = make_session(project, model, FakeLink(), store, defer=frozenset({"goToLocation"}))
    result = await session.run_turn("go")
    assert [c.id for c in result.deferred] == ["mine"]
    assert store.memories == {"t1": ["ann was here"]}
    history = list(session.history)
    own = [m for m in history if m.get("tool_call_id") == "own"]
    assert len(own) == 1
    assert json.loads(own[0]["content"]) == {"remembered": "ann was here"}
    # The client answers its call; the turn goes on with a complete history.
    session.history.append({"role": "tool", "tool_call_id": "mine", "content": '{"ok":true}'})
    await session.run_turn(None)
    assert {m["tool_call_id"] for m in tool_messages(model.requests[1])} == {"mine", "own"}
    check_wellformed(model.requests[1]["messages"][1:])


def check_wellformed(messages: list[dict[str, Any]]) -> None:
    """What providers demand: every tool message answers a call of the assistant message
    before it, and every call is answered before the next non-tool message."""
    open_calls: set[str] = set()
    for message in messages:
        if message["role"] == "tool":
            assert message["tool_call_id"] in open_calls, f"orphan tool result: {message}"
            open_calls.discard(message["tool_call_id"])
            continue
        assert not open_calls, f"unanswered calls {open_calls} before {message}"
        open_calls = {c["id"] for c in message.get("tool_calls") or ()}
