"""Scenario files: loading, set-up merging, located errors, assertion results with names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sim.errors import SimFileError
from sim.scenario import Expect, evaluate, find_scenarios, load_scenario
from sim.world import World
from sim.world_file import load_world

VILLAGE = Path(__file__).resolve().parents[2] / "samples" / "village"


def test_sample_world_and_scenarios_load() -> None:
    spec = load_world(VILLAGE / "world.toml")
    assert [n.id for n in spec.npc] == ["guard", "merchant", "villager"]
    found = find_scenarios(VILLAGE)
    assert {"password", "wrong_password", "merchant"} <= set(found)
    password = load_scenario(found["password"])
    assert [n.id for n in password.world.npc] == ["guard"]
    assert password.world.script[0].say is not None
    assert "Oak" in password.world.script[0].say
    assert password.duration == 60
    merchant = load_scenario(found["merchant"])
    (player,) = merchant.world.player
    assert (player.at, player.x, player.gold) == ("market", None, 10)


def test_world_errors_name_file_line_field(tmp_path: Path) -> None:
    path = tmp_path / "world.toml"
    path.write_text(
        '[world]\nwalk_speed = -1\n\n[[location]]\nname = "gate"\nx = 0\nz = 0\n\n'
        '[[npc]]\nid = "guard"\nat = "gate"\n\n[[npc]]\nid = "bob"\nat = "nowhere"\n',
        encoding="utf-8",
    )
    with pytest.raises(SimFileError) as info:
        load_world(path)
    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (2, "world.walk_speed")
    path.write_text(path.read_text().replace("walk_speed = -1", "walk_speed = 1"))
    with pytest.raises(SimFileError) as info:
        load_world(path)
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.field) == (str(path), 15, "npc[1].at")
    assert "nowhere" in problem.message
    path.write_text("[world\n")
    with pytest.raises(SimFileError, match="invalid TOML"):
        load_world(path)


def test_scenario_errors_are_located(tmp_path: Path) -> None:
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "world.toml").write_text((VILLAGE / "world.toml").read_text())
    bad = tmp_path / "scenarios" / "bad.toml"
    bad.write_text(
        '[scenario]\nduration = 10\n\n[expect]\nsaid = [{ npc = "ghost", contains = "x" }]\n'
    )
    with pytest.raises(SimFileError) as info:
        load_scenario(bad)
    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (5, "expect.said[0].npc")
    bad.write_text("[scenario]\nduration = 10\n")
    with pytest.raises(SimFileError, match="at least one assertion"):
        load_scenario(bad)


def _end(world: World) -> dict[str, Any]:
    return world.snapshot()


def test_assertions_pass_and_fail_with_names(make_world: Any) -> None:
    world = make_world()
    world.start("c1", "guard", "openGate", {})
    records = [
        {"type": "call", "t": 3.0, "id": "c1", "npc": "guard", "cap": "openGate", "args": {}},
        {"type": "line", "t": 3.1, "npc": "guard", "text": "Oak it is. Stand back."},
    ]
    expect = Expect(
        gate_open_by=60,
        never=["openGate"],
        gold_never_negative=["merchant"],
        said=[{"npc": "guard", "contains": "OAK"}, {"npc": "merchant", "contains": "apple"}],  # type: ignore[list-item]
        used=[{"cap": "openGate", "npc": "guard", "at_least": 1}],  # type: ignore[list-item]
        holding=[{"who": "merchant", "item": "apple"}],  # type: ignore[list-item]
        gold=[{"who": "player", "at_least": 5, "name": "player is rich"}],  # type: ignore[list-item]
    )
    results = {r.name: r for r in evaluate(expect, records, _end(world))}
    assert {n: r.passed for n, r in results.items()} == {
        "gate_open_by=60": True,
        "never openGate": False,
        "gold_never_negative merchant": True,
        "said guard ~ 'OAK'": True,
        "said merchant ~ 'apple'": False,
        "used openGate by guard >=1": True,
        "merchant holds apple": True,
        "player is rich": False,
    }
    assert results["never openGate"].detail == "openGate called 1x, first by guard at t=3.0"
    assert "said 0 line(s)" in results["said merchant ~ 'apple'"].detail
    assert results["player is rich"].detail == "player has 3 gold"


def test_gate_never_opened_and_negative_gold(make_world: Any) -> None:
    world = make_world(npc=[{"id": "guard", "at": "gate", "gold": -1}])
    results = evaluate(
        Expect(gate_open_by=10, gate_open=False, gold_never_negative=["guard"]), [], _end(world)
    )
    assert [(r.name, r.passed) for r in results] == [
        ("gate_open_by=10", False),
        ("gate_open=false", True),
        ("gold_never_negative guard", False),
    ]
    assert "never opened" in results[0].detail
