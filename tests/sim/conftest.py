from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sim.world import World
from sim.world_file import world_from_dict

VILLAGE = Path(__file__).resolve().parents[2] / "samples" / "village"


def build_world(**overrides: Any) -> World:
    """A small world: guard at the gate, merchant at the market, one player, flat 1 m/s."""
    data: dict[str, Any] = {
        "world": {
            "bounds": {"min_x": -50, "max_x": 50, "min_z": -50, "max_z": 50},
            "tick_ms": 100,
            "walk_speed": 1.0,
            "earshot": 10,
            "sight": 20,
            "reach": 2.5,
        },
        "location": [
            {"name": "gate", "x": 0, "z": 40},
            {"name": "market", "x": 10, "z": 0},
        ],
        "gate": {"at": "gate", "reach": 5, "key_holders": ["guard"]},
        "item": [{"name": "apple", "at": "market", "count": 2}],
        "prices": {"apple": 2},
        "npc": [
            {"id": "guard", "at": "gate"},
            {"id": "merchant", "at": "market", "holding": ["apple"], "gold": 0},
        ],
        "player": [{"id": "player", "x": 10, "z": 1, "gold": 3}],
    }
    data.update(overrides)
    return World(world_from_dict(data))


WorldFactory = Callable[..., World]


@pytest.fixture
def make_world() -> WorldFactory:
    return build_world


@pytest.fixture
def world() -> World:
    return build_world()
