"""World mechanics, driven tick by tick with no I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sim.world import ActionDone, Output, Perception, World, WorldNote


def done(outputs: list[Output]) -> list[ActionDone]:
    return [o for o in outputs if isinstance(o, ActionDone)]


def events(outputs: list[Output], kind: str | None = None) -> list[Perception]:
    return [o for o in outputs if isinstance(o, Perception) and (kind is None or o.kind == kind)]


def run_until_done(world: World, call_id: str, max_ticks: int = 10_000) -> tuple[ActionDone, int]:
    for n in range(1, max_ticks + 1):
        for out in done(world.tick()):
            if out.call_id == call_id:
                return out, n
    raise AssertionError(f"{call_id} never finished")


def test_walk_takes_ticks_and_arrives(world: World) -> None:
    assert world.start("c1", "merchant", "goToLocation", {"x": 10, "z": 10}) == [
        WorldNote(
            "move",
            {
                "who": "merchant",
                "x": 10.0,
                "z": 0.0,
                "phase": "start",
                "to": {"x": 10.0, "z": 10.0},
            },
            0.0,
        )
    ]
    assert world.busy("merchant")
    world.tick()
    x, z = world.position("merchant")
    assert (x, z) == pytest.approx((10.0, 0.1))  # 1 m/s, 100 ms ticks
    result, ticks = run_until_done(world, "c1")
    assert result.ok
    assert result.data == {"x": 10.0, "z": 10.0, "arrived": True}
    assert ticks == 99  # 10 m in 100 ticks, one already taken
    assert result.t == pytest.approx(10.0)
    assert world.position("merchant") == (10.0, 10.0)
    assert not world.busy("merchant")


def test_walk_out_of_bounds_fails_at_once(world: World) -> None:
    (result,) = done(world.start("c1", "guard", "goToLocation", {"x": 0, "z": 500}))
    assert not result.ok
    assert result.error is not None
    assert result.error.code == "OUT_OF_BOUNDS"
    assert world.position("guard") == (0.0, 40.0)


@pytest.mark.parametrize(
    "args", [{"x": "1", "z": 0}, {"x": True, "z": 0}, {"z": 0}, {"x": float("nan"), "z": 0}]
)
def test_walk_bad_arguments_are_errors(world: World, args: dict[str, Any]) -> None:
    (result,) = done(world.start("c1", "guard", "goToLocation", args))
    assert result.error is not None
    assert result.error.code == "BAD_INPUT"


def test_new_walk_interrupts_previous(world: World) -> None:
    world.start("c1", "merchant", "goToLocation", {"x": 10, "z": 20})
    for _ in range(30):
        world.tick()
    outputs = world.start("c2", "merchant", "goToLocation", {"x": 0, "z": 3})
    (first,) = done(outputs)
    assert first.call_id == "c1"
    assert first.error is not None
    assert first.error.code == "INTERRUPTED"
    assert "(10.0, 3.0)" in first.error.message
    result, _ = run_until_done(world, "c2")
    assert result.ok
    assert world.position("merchant") == (0.0, 3.0)


def test_cancel_stops_walk_where_it_is(world: World) -> None:
    world.start("c1", "merchant", "goToLocation", {"x": 10, "z": 20})
    for _ in range(5):
        world.tick()
    (result,) = done(world.cancel("c1", "deadline"))
    assert result.error is not None
    assert result.error.code == "CANCELLED"
    assert world.position("merchant") == pytest.approx((10.0, 0.5))
    world.tick()
    assert world.position("merchant") == pytest.approx((10.0, 0.5))
    assert world.cancel("c1") == []  # finished ids are ignored


def test_wait_takes_simulated_seconds(world: World) -> None:
    assert done(world.start("w", "guard", "wait", {"seconds": 1.5})) == []
    result, ticks = run_until_done(world, "w")
    assert result.ok
    assert ticks == 15


def test_gate_opens_only_near_and_for_key_holder(world: World) -> None:
    (far,) = done(world.start("c1", "merchant", "openGate", {}))
    assert far.error is not None
    assert far.error.code == "NOT_ALLOWED"
    assert world.snapshot()["gate"]["open"] is False
    world.tick()
    outputs = world.start("c2", "guard", "openGate", {})
    (ok,) = done(outputs)
    assert ok.ok
    assert ok.data == {"open": True, "already_open": False}
    gate = world.snapshot()["gate"]
    assert gate["open"]
    assert gate["opened_by"] == "guard"
    assert gate["opened_at"] == pytest.approx(0.1)
    (again,) = done(world.start("c3", "guard", "openGate", {}))
    assert again.data == {"open": True, "already_open": True}


def test_gate_too_far(make_world: Callable[..., World]) -> None:
    world = make_world(npc=[{"id": "guard", "x": 0, "z": 20}])
    (result,) = done(world.start("c1", "guard", "openGate", {}))
    assert result.error is not None
    assert result.error.code == "TOO_FAR"


def test_pick_up_and_give_with_payment(world: World) -> None:
    outputs = world.start("p1", "merchant", "pickUp", {"item": "apple"})
    (result,) = done(outputs)
    assert result.ok
    assert world.holding("merchant") == ["apple", "apple"]
    (state,) = events(outputs, "state")
    assert state.npc == "merchant"
    assert state.data["holding"] == ["apple", "apple"]
    assert world.snapshot()["ground"][0]["count"] == 1

    (sale,) = done(world.start("g1", "merchant", "giveItem", {"item": "apple", "to": "player"}))
    assert sale.ok
    assert world.holding("player") == ["apple"]
    assert (world.gold("player"), world.gold("merchant")) == (1, 2)
    (broke,) = done(world.start("g2", "merchant", "giveItem", {"item": "apple", "to": "player"}))
    assert broke.error is not None
    assert broke.error.code == "CANNOT_PAY"
    assert world.holding("merchant") == ["apple"]
    assert world.gold("player") == 1
    assert world.min_gold("player") == 1
    assert world.min_gold("merchant") == 0


def test_item_failures(world: World) -> None:
    (nothere,) = done(world.start("a", "guard", "pickUp", {"item": "apple"}))
    assert nothere.error is not None
    assert nothere.error.code == "NOT_HERE"
    (notheld,) = done(world.start("b", "guard", "giveItem", {"item": "apple", "to": "player"}))
    assert notheld.error is not None
    assert notheld.error.code == "NOT_HELD"
    (far,) = done(world.start("c", "merchant", "giveItem", {"item": "apple", "to": "guard"}))
    assert far.error is not None
    assert far.error.code == "TOO_FAR"
    (nobody,) = done(world.start("d", "merchant", "giveItem", {"item": "apple", "to": "ghost"}))
    assert nobody.error is not None
    assert nobody.error.code == "UNKNOWN_TARGET"
    assert world.holding("merchant") == ["apple"]


def test_npcs_hear_each_other_within_earshot(make_world: Callable[..., World]) -> None:
    world = make_world(
        npc=[
            {"id": "a", "x": 0, "z": 0},
            {"id": "b", "x": 5, "z": 0},
            {"id": "c", "x": 30, "z": 0},
        ]
    )
    outputs = world.start("s1", "a", "say", {"text": "Hello there"})
    heard = events(outputs, "heard")
    assert [(e.npc, e.data) for e in heard] == [("b", {"speaker": "a", "text": "Hello there"})]
    (result,) = done(outputs)
    assert result.data == {"heard_by": ["b"]}
    # Streamed speech (say deltas assembled by the runner) is heard the same way.
    assert [(e.npc, e.data["speaker"]) for e in events(world.speak("b", "Hi a"), "heard")] == [
        ("a", "b")
    ]


def test_scripted_player_speaks_and_walks_into_sight(make_world: Callable[..., World]) -> None:
    world = make_world(
        npc=[{"id": "guard", "at": "gate"}],
        player=[{"id": "player", "x": 0, "z": 0}],
        script=[
            {"at": 0.5, "say": "Anyone there?", "to": "guard"},
            {"at": 1, "move": "gate"},
        ],
    )
    outputs: list[Output] = []
    for _ in range(30):
        outputs += world.tick()
    notes = [o for o in outputs if isinstance(o, WorldNote)]
    assert any(n.kind == "unheard" and n.data["to"] == "guard" for n in notes)
    assert events(outputs) == []
    for _ in range(420):  # 40 m at 1 m/s from t=1
        outputs += world.tick()
    (saw,) = events(outputs, "saw")
    assert saw.npc == "guard"
    assert saw.data["what"] == "player"
    assert 19.9 <= 40 - saw.data["where"]["z"] <= 20.0
    assert world.script_done
    assert world.position("player") == (0.0, 40.0)


def test_follow_keeps_distance_and_ends_when_target_stops(
    make_world: Callable[..., World],
) -> None:
    world = make_world(
        npc=[{"id": "tam", "x": 0, "z": 0}],
        player=[{"id": "player", "x": 0, "z": 3}],
        script=[{"at": 0.5, "move": [0, 13]}],
    )
    world.start("f", "tam", "follow", {"target": "player"})
    result, _ = run_until_done(world, "f")
    assert result.ok
    assert result.data is not None
    assert result.data["stopped"] == "target stopped"
    assert world.position("tam")[1] == pytest.approx(11.0, abs=0.2)
    (bad,) = done(world.start("g", "tam", "follow", {"target": "tam"}))
    assert bad.error is not None
    assert bad.error.code == "UNKNOWN_TARGET"


def test_unknown_capability_and_npc(world: World) -> None:
    (cap,) = done(world.start("a", "guard", "fly", {}))
    assert cap.error is not None
    assert cap.error.code == "UNKNOWN_CAPABILITY"
    (npc,) = done(world.start("b", "player", "say", {"text": "hi"}))
    assert npc.error is not None
    assert npc.error.code == "UNKNOWN_NPC"
