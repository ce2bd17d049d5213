"""Cloning the village for load runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.scale import scale_world
from sim.world import Perception, World
from sim.world_file import load_world

VILLAGE = Path(__file__).resolve().parents[2] / "samples" / "village"


@pytest.mark.parametrize(("n", "copies"), [(1, 1), (3, 1), (4, 2), (10, 4), (100, 34)])
def test_exact_npc_count_and_copies(n: int, copies: int) -> None:
    spec = scale_world(load_world(VILLAGE / "world.toml"), n)
    assert len(spec.npc) == n
    assert len(spec.player) == copies
    assert len(spec.gates) == copies
    assert len({npc.id for npc in spec.npc}) == n


def test_copies_are_independent_villages() -> None:
    spec = scale_world(load_world(VILLAGE / "world.toml"), 6)
    assert [n.id for n in spec.npc] == [
        "guard",
        "merchant",
        "villager",
        "guard-2",
        "merchant-2",
        "villager-2",
    ]
    assert {(n.id, n.character_id) for n in spec.npc if n.id.endswith("-2")} == {
        ("guard-2", "guard"),
        ("merchant-2", "merchant"),
        ("villager-2", "villager"),
    }
    steps = [s for s in spec.script if s.player == "player-2"]
    assert steps[0].to == "guard-2"
    assert spec.gates[1].key_holders == ["guard-2"]
    world = World(spec)
    out = []
    for _ in range(60):
        out += world.tick()
    heard = [
        (p.npc, p.data["speaker"]) for p in out if isinstance(p, Perception) and p.kind == "heard"
    ]
    assert ("guard", "player") in heard
    assert ("guard-2", "player-2") in heard
    assert ("guard", "player-2") not in heard
    assert ("guard-2", "player") not in heard
    # guard-2 can open its own gate, not the first one.
    outputs = world.start("c", "guard-2", "openGate", {})
    assert world.snapshot()["gates"][1]["opened_by"] == "guard-2"
    assert world.snapshot()["gates"][0]["open"] is False
    assert outputs


def test_scale_down_drops_addressee_not_the_line() -> None:
    spec = scale_world(load_world(VILLAGE / "world.toml"), 1)
    assert [n.id for n in spec.npc] == ["guard"]
    follow = [s for s in spec.script if s.say and "follow" in s.say]
    assert follow
    assert follow[0].to is None
    with pytest.raises(ValueError, match=">= 1"):
        scale_world(spec, 0)
