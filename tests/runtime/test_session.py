"""The turn loop of one NPC (runtime.session.NpcSession) against a scripted model endpoint on
loopback (real CompletionsClient, real SSE) and an in-process game link.

What the model received is asserted on the request bodies the endpoint recorded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from runtime.completions import CompletionsClient
from runtime.project import Project
from runtime.session import NpcSession, Perception
from runtime.store import MemoryStore
from tests.runtime.scripted import (
    FakeLink,
    GameCall,
    Reply,
    ScriptedModel,
    call,
    eventually,
    make_project,
    tool_messages,
    tool_names,
)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    built: Project = make_project(tmp_path / "project")
    return built


def new_session(
    project: Project,
    client: CompletionsClient,
    link: FakeLink | None = None,
    *,
    store: MemoryStore | None = None,
    character: str = "tester",
    **kwargs: Any,
) -> NpcSession:
    return NpcSession(
        "t1",
        project.characters[character],
        project.registry,
        client,
        store if store is not None else MemoryStore(),
        project.config.limits,
        link=link,
        **kwargs,
    )


@pytest_asyncio.fixture
async def model() -> AsyncIterator[ScriptedModel]:
    async with ScriptedModel([Reply("unused")]) as scripted:
        yield scripted


def error_of(message: dict[str, Any]) -> dict[str, Any]:
    content = json.loads(message["content"])
    assert isinstance(content, dict)
    assert "error" in content, content
    error: dict[str, Any] = content["error"]
    return error


# -- the basic turn -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_turn_calls_the_game_and_feeds_the_result_back(
    project: Project, model: ScriptedModel
) -> None:
    model.script = [
        Reply("On my way.", calls=[call("goToLocation", {"x": 3, "z": -4}, "c1")]),
        Reply("I am there now."),
    ]
    link = FakeLink(handler=lambda c: {"arrived": True, "at": [c.args["x"], c.args["z"]]})
    store = MemoryStore()
    session = new_session(project, model.client(), link, store=store)

    result = await session.run_turn('player says: "come here"')

    assert result.outcome == "done"
    assert (result.steps, result.tool_calls) == (2, 1)
    assert result.text == "On my way. I am there now."
    assert [(c.cap, c.args, c.mode, c.timeout_s) for c in link.calls] == [
        ("goToLocation", {"x": 3, "z": -4}, "call", 5.0)
    ]
    first, second = model.requests
    assert first["messages"][0]["role"] == "system"
    assert first["messages"][1:] == [{"role": "user", "content": 'player says: "come here"'}]
    assert first["stream"] is True
    assert "goToLocation" in tool_names(first)
    assert second["messages"][2]["tool_calls"][0]["function"] == {
        "name": "goToLocation",
        "arguments": '{"x":3,"z":-4}',
    }
    assert tool_messages(second) == [
        {"role": "tool", "tool_call_id": "c1", "content": '{"arrived":true,"at":[3,-4]}'}
    ]
    # Speech went out as deltas, each step's stream closed with say_end(done).
    streams = [s for s, _ in link.said]
    assert "".join(t for _, t in link.said) == "On my way.I am there now."
    assert [r for _, r in link.ends] == ["done", "done"]
    assert {s for s, _ in link.ends} == set(streams)
    assert len(set(streams)) == 2
    assert link.states == ["thinking", "speaking", "acting", "thinking", "speaking", "idle"]
    # Every message was stored, the turn row too, with the model's token usage.
    assert [r.message["role"] for r in store.messages] == ["user", "assistant", "tool", "assistant"]
    assert store.messages[1].meta == {"prompt_tokens": 20, "completion_tokens": 5}
    (turn,) = store.turns
    assert (turn.outcome, turn.steps, turn.tool_calls, turn.prompt_tokens) == ("done", 2, 1, 40)
    assert turn.first_speech_ms is not None


@pytest.mark.asyncio
async def test_history_carries_over_to_the_next_turn(
    project: Project, model: ScriptedModel
) -> None:
    model.script = [Reply("Hello."), Reply("Again?")]
    session = new_session(project, model.client(), FakeLink())
    await session.run_turn("one")
    await session.run_turn("two")
    assert [m["content"] for m in model.requests[1]["messages"][1:]] == ["one", "Hello.", "two"]
    assert session.turn_number == 2


# -- bad tool calls ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_invalid_arguments_become_a_tool_error_naming_the_field(
    project: Project, model: ScriptedModel
) -> None:
    model.script = [
        Reply(calls=[call("goToLocation", {"x": "north"}, "bad")]),
        Reply(calls=[call("goToLocation", {"x": 1, "z": 2}, "good")]),
        Reply("Done."),
    ]
    link = FakeLink()
    result = await new_session(project, model.client(), link).run_turn("go")

    assert result.outcome == "done"
    (bad,) = tool_messages(model.requests[1])
    assert bad["tool_call_id"] == "bad"
    error = error_of(bad)
    assert error["code"] == "INVALID_ARGUMENTS"
    assert "z" in error["message"]
    assert "x" in error["message"]
    assert "goToLocation" in error["message"]
    # Only the valid retry reached the game.
    assert [c.args for c in link.calls] == [{"x": 1, "z": 2}]


@pytest.mark.asyncio
async def test_malformed_json_arguments_are_a_tool_error(
    project: Project, model: ScriptedModel
) -> None:
    model.script = [Reply(calls=[call("goToLocation", '{"x": 1, "z":', "cut")]), Reply("Hm.")]
    link = FakeLink()
    result = await new_session(project, model.client(), link).run_turn("go")
    assert result.outcome == "done"
    assert error_of(tool_messages(model.requests[1])[0])["code"] == "INVALID_ARGUMENTS"
    assert link.calls == []


@pytest.mark.asyncio
async def test_unknown_tool_error_lists_the_valid_names(
    project: Project, model: ScriptedModel
) -> None:
    model.script = [Reply(calls=[call("fly", {"to": "moon"}, "f1")]), Reply("I cannot fly.")]
    link = FakeLink()
    result = await new_session(project, model.client(), link, character="helper").run_turn("fly")

    assert result.outcome == "done"
    message = error_of(tool_messages(model.requests[1])[0])["message"]
    assert "fly" in message
    # The helper's own tools are listed, and nothing it cannot use.
    assert "goToLocation" in message
    assert "openGate" in message
    assert "slowAction" not in message
    assert link.calls == []


@pytest.mark.asyncio
async def test_retry_budget_exhausted_fails_the_turn(
    project: Project, model: ScriptedModel
) -> None:
    # tool_retries = 2: the third invalid call of the same capability ends the turn.
    model.script = [Reply(calls=[call("goToLocation", {"x": 1})])]
    link = FakeLink()
    store = MemoryStore()
    session = new_session(project, model.client(), link, store=store)
    result = await session.run_turn("go")

    assert result.outcome == "failed"
    assert result.error is not None
    assert "goToLocation" in result.error
    assert len(model.requests) == 3
    assert link.calls == []
    assert store.turns[-1].outcome == "failed"
    # The history stays well formed: every call has its (error) result.
    assert [m["role"] for m in session.history][-2:] == ["assistant", "tool"]
    assert link.states[-1] == "idle"


@pytest.mark.asyncio
async def test_two_invalid_attempts_are_within_budget(
    project: Project, model: ScriptedModel
) -> None:
    model.script = [
        Reply(calls=[call("goToLocation", {"x": 1})]),
        Reply(calls=[call("goToLocation", {"z": 1})]),
        Reply(calls=[call("goToLocation", {"x": 1, "z": 1})]),
        Reply("There."),
    ]
    session = new_session(project, model.client(), FakeLink())
    result = await session.run_turn("go")
    assert result.outcome == "done"
    assert result.steps == 4


@pytest.mark.asyncio
async def test_step_limit_ends_the_turn(project: Project, model: ScriptedModel) -> None:
    # steps_per_turn = 4 in the test project; the model never stops asking.
    model.script = [Reply(calls=[call("openGate")])]
    link = FakeLink()
    result = await new_session(project, model.client(), link).run_turn("open")
    assert result.outcome == "step_limit"
    assert result.steps == 4
    assert len(model.requests) == 4
    assert len(link.calls) == 4
    assert result.error is not None
    assert "4" in result.error


# -- modes and concurrency ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_fire_mode_answers_dispatched_at_once(project: Project, model: ScriptedModel) -> None:
    model.script = [Reply(calls=[call("shout", {"text": "Halt!"}, "s1")]), Reply("There.")]
    link = FakeLink(handler=lambda c: None)
    await new_session(project, model.client(), link).run_turn("shout")
    assert [(c.cap, c.mode) for c in link.calls] == [("shout", "fire")]
    assert tool_messages(model.requests[1]) == [
        {"role": "tool", "tool_call_id": "s1", "content": '{"status":"dispatched"}'}
    ]


@pytest.mark.asyncio
async def test_parallel_calls_results_keep_the_models_order(
    project: Project, model: ScriptedModel
) -> None:
    model.script = [
        Reply(
            calls=[
                call("goToLocation", {"x": 1, "z": 1}, "first"),
                call("pickUp", {"item": "apple"}, "second"),
                call("openGate", {}, "third"),
            ]
        ),
        Reply("All done."),
    ]
    finished: list[str] = []
    third_done = asyncio.Event()
    second_done = asyncio.Event()

    async def game(c: GameCall) -> dict[str, Any]:
        # Finish in reverse order: this only completes if the calls run concurrently.
        if c.cap == "goToLocation":
            await second_done.wait()
        elif c.cap == "pickUp":
            await third_done.wait()
        finished.append(c.cap)
        (second_done if c.cap == "pickUp" else third_done).set()
        return {"done": c.cap}

    link = FakeLink(handler=game)
    result = await asyncio.wait_for(
        new_session(project, model.client(), link).run_turn("do it all"), 5
    )
    assert result.outcome == "done"
    assert result.tool_calls == 3
    assert finished == ["openGate", "pickUp", "goToLocation"]
    tools = tool_messages(model.requests[1])
    assert [m["tool_call_id"] for m in tools] == ["first", "second", "third"]
    assert [json.loads(m["content"])["done"] for m in tools] == [
        "goToLocation",
        "pickUp",
        "openGate",
    ]


@pytest.mark.asyncio
async def test_game_errors_become_tool_messages(project: Project, model: ScriptedModel) -> None:
    from bridge import GameError

    def game(c: GameCall) -> Any:
        raise GameError("BLOCKED", "the gate is jammed")

    model.script = [Reply(calls=[call("openGate", {}, "g")]), Reply("It is stuck.")]
    result = await new_session(project, model.client(), FakeLink(handler=game)).run_turn("open")
    assert result.outcome == "done"
    assert error_of(tool_messages(model.requests[1])[0]) == {
        "code": "BLOCKED",
        "message": "the gate is jammed",
    }


@pytest.mark.asyncio
async def test_no_game_connected_is_a_disconnected_tool_error(
    project: Project, model: ScriptedModel
) -> None:
    model.script = [Reply(calls=[call("openGate", {}, "g")]), Reply("Nobody there.")]
    result = await new_session(project, model.client(), link=None).run_turn("open")
    assert result.outcome == "done"
    error = error_of(tool_messages(model.requests[1])[0])
    assert error["code"] == "DISCONNECTED"


@pytest.mark.asyncio
async def test_runtime_capabilities_run_in_python_with_memory_and_game(
    project: Project, model: ScriptedModel
) -> None:
    model.script = [
        Reply(calls=[call("remember", {"fact": "The baker likes rye."}, "r1")]),
        Reply(calls=[call("recall", {"topic": "baker"}, "r2"), call("walkHome", {}, "r3")]),
        Reply("Noted."),
    ]
    store = MemoryStore()
    link = FakeLink(handler=lambda c: {"arrived": c.args})
    result = await new_session(project, model.client(), link, store=store).run_turn("remember")
    assert result.outcome == "done"
    assert store.memories == {"t1": ["The baker likes rye."]}
    _, recall, walk = tool_messages(model.requests[2])
    assert json.loads(recall["content"]) == {"facts": ["The baker likes rye."]}
    assert json.loads(walk["content"]) == {"arrived": {"x": 1, "z": 2}}
    assert [(c.cap, c.mode) for c in link.calls] == [("goToLocation", "call")]


@pytest.mark.asyncio
async def test_model_failure_fails_the_turn_not_the_session(
    project: Project, model: ScriptedModel
) -> None:
    model.script = [Reply(status=500), Reply("Back again.")]
    link = FakeLink()
    session = new_session(project, model.client(max_retries=0), link)
    failed = await session.run_turn("hello")
    assert failed.outcome == "failed"
    assert failed.error is not None
    assert "model error" in failed.error
    assert link.states[-1] == "idle"
    ok = await session.run_turn("hello again")
    assert ok.outcome == "done"
    assert ok.text == "Back again."


# -- what the model is offered ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_undeclared_game_capabilities_are_not_offered(
    project: Project, model: ScriptedModel
) -> None:
    model.script = [Reply("Hi.")]
    declared = frozenset({"goToLocation", "shout"})
    session = new_session(project, model.client(), FakeLink(), declared=declared)
    assert sorted(session.missing) == ["openGate", "pickUp", "slowAction"]
    await session.run_turn("hi")
    offered = tool_names(model.requests[0])
    # Runtime capabilities stay; undeclared game ones are gone.
    assert sorted(offered) == ["goToLocation", "recall", "remember", "shout", "walkHome"]


@pytest.mark.asyncio
async def test_defer_mode_hands_calls_back(project: Project, model: ScriptedModel) -> None:
    client_tool = {
        "type": "function",
        "function": {"name": "lookAround", "parameters": {"type": "object", "properties": {}}},
    }
    model.script = [
        Reply(calls=[call("goToLocation", {"x": 1, "z": 1}, "d1"), call("lookAround", {}, "d2")])
    ]
    link = FakeLink()
    session = new_session(
        project,
        model.client(),
        link,
        extra_tools=[client_tool],
        defer=frozenset({"goToLocation"}),
    )
    result = await session.run_turn("look")
    assert "lookAround" in tool_names(model.requests[0])
    assert [c.id for c in result.deferred] == ["d1", "d2"]
    assert link.calls == []
    assert len(model.requests) == 1


# -- perceptions and the loop -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_non_triggering_events_go_into_the_system_prompt(
    project: Project, model: ScriptedModel
) -> None:
    model.script = [Reply("I see.")]
    session = new_session(project, model.client(), FakeLink())
    session.perceive(Perception("saw", {"what": "a wolf", "where": [1, 2]}))
    session.perceive(Perception("state", {"position": [5, 6]}))
    session.start()
    session.perceive(Perception("heard", {"speaker": "ann", "text": "look!"}))
    body = await model.wait_requests(1)
    await session.close()
    system = body["messages"][0]["content"]
    assert "You see a wolf at [1, 2]." in system
    assert '"position": [5, 6]' in system
    assert body["messages"][1] == {"role": "user", "content": 'ann says: "look!"'}


@pytest.mark.asyncio
async def test_waiting_triggers_are_coalesced_and_expired(
    project: Project, model: ScriptedModel
) -> None:
    model.script = [Reply("Yes?")]
    session = new_session(project, model.client(), FakeLink())
    stale = Perception("heard", {"speaker": "old", "text": "too late"}, ttl_ms=10, at=0.0)
    session.perceive(stale)
    session.perceive(Perception("heard", {"speaker": "ann", "text": "hi"}))
    session.perceive(Perception("heard", {"speaker": "bob", "text": "hello"}))
    session.start()
    body = await model.wait_requests(1)
    await asyncio.sleep(0.05)
    await session.close()
    assert body["messages"][1:] == [
        {"role": "user", "content": 'ann says: "hi"\nbob says: "hello"'}
    ]
    assert len(model.requests) == 1


@pytest.mark.asyncio
async def test_event_queue_is_bounded(project: Project, model: ScriptedModel) -> None:
    model.script = [Reply("Yes?")]
    session = new_session(project, model.client(), FakeLink())
    limit = project.config.limits.event_queue
    for i in range(limit + 5):
        session.perceive(Perception("heard", {"speaker": "p", "text": str(i)}))
    session.start()
    body = await model.wait_requests(1)
    await session.close()
    lines = body["messages"][1]["content"].split("\n")
    assert len(lines) == limit
    assert lines[-1] == f'p says: "{limit + 4}"'  # the oldest were dropped


@pytest.mark.asyncio
async def test_interruption_while_speaking(project: Project, model: ScriptedModel) -> None:
    gate = asyncio.Event()
    model.script = [
        Reply("Let me tell you a long story", gate=gate, gate_at="after_text"),
        Reply("Oh, you again."),
    ]
    link = FakeLink()
    store = MemoryStore()
    session = new_session(project, model.client(), link, store=store)
    session.start()
    session.perceive(Perception("heard", {"speaker": "ann", "text": "tell me"}))
    await model.wait_requests(1)
    await eventually(lambda: len(link.said) == 7)  # all text is out: the NPC is speaking
    session.perceive(Perception("heard", {"speaker": "ann", "text": "stop!"}))
    second = await model.wait_requests(2)
    await eventually(lambda: len(store.turns) == 2)
    await session.close()

    assert (link.said[0][0], "interrupted") in link.ends
    assert [t.outcome for t in store.turns] == ["interrupted", "done"]
    users = [m["content"] for m in second["messages"] if m["role"] == "user"]
    assert users == ['ann says: "tell me"', 'ann says: "stop!"']


@pytest.mark.asyncio
async def test_interruption_while_acting_cancels_the_call(
    project: Project, model: ScriptedModel
) -> None:
    model.script = [Reply(calls=[call("goToLocation", {"x": 9, "z": 9}, "walk")]), Reply("Yes?")]
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def game(c: GameCall) -> Any:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    link = FakeLink(handler=game)
    store = MemoryStore()
    session = new_session(project, model.client(), link, store=store)
    session.start()
    session.perceive(Perception("heard", {"speaker": "ann", "text": "walk"}))
    await asyncio.wait_for(started.wait(), 5)
    session.perceive(Perception("heard", {"speaker": "ann", "text": "wait, come back"}))
    second = await model.wait_requests(2)
    await asyncio.wait_for(cancelled.wait(), 5)
    await session.close()

    (tool,) = tool_messages(second)
    assert tool["tool_call_id"] == "walk"
    assert error_of(tool)["code"] == "CANCELLED"
    assert [m["role"] for m in second["messages"][1:]] == ["user", "assistant", "tool", "user"]
    assert store.turns[0].outcome == "interrupted"


@pytest.mark.asyncio
async def test_close_cancels_the_running_turn(project: Project, model: ScriptedModel) -> None:
    hang = asyncio.Event()
    model.script = [Reply("never", gate=hang)]
    link = FakeLink()
    store = MemoryStore()
    session = new_session(project, model.client(), link, store=store)
    task = session.start()
    session.perceive(Perception("heard", {"speaker": "ann", "text": "hi"}))
    await model.wait_requests(1)
    await asyncio.wait_for(session.close(), 5)
    assert task.done()
    assert [t.outcome for t in store.turns] == ["cancelled"]
    # A closed session ignores further perceptions.
    session.perceive(Perception("heard", {"speaker": "ann", "text": "hello?"}))
    await asyncio.sleep(0.05)
    assert len(model.requests) == 1
