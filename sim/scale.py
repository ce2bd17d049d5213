"""Cloning a world for load runs (``npc sim --npcs N``).

Clones are whole copies of the village side by side on a grid, each with its own NPCs,
players, locations, items, gate and script, so copy k behaves like copy 1 and nobody hears
the next village: load grows linearly instead of turning into one crowd where every NPC
hears every other (an O(N²) event storm that measures nothing useful).
"""

from __future__ import annotations

import math
from typing import Any

from sim.world_file import WorldSpec, drop_dangling_addressees, world_from_dict

__all__ = ["scale_world"]


def _suffix(name: str, k: int) -> str:
    return name if k == 0 else f"{name}-{k + 1}"


def scale_world(spec: WorldSpec, npcs: int) -> WorldSpec:
    """A world with exactly ``npcs`` NPCs: ``ceil(npcs / len(spec.npc))`` copies of ``spec``
    (ids ``guard``, ``guard-2``, ...; the last copy keeps only the first NPCs it needs).
    ``npcs`` below the original count keeps the first ``npcs`` NPCs of the one copy."""
    if npcs < 1:
        raise ValueError("npcs must be >= 1")
    base = spec.model_dump(exclude_none=True)
    per = len(spec.npc)
    if per == 0:
        raise ValueError("the world has no NPCs to clone")
    copies = math.ceil(npcs / per)
    b = spec.world.bounds
    width, depth = b.max_x - b.min_x, b.max_z - b.min_z
    side = math.ceil(math.sqrt(copies))
    out: dict[str, Any] = {
        "world": dict(base["world"]),
        "prices": base.get("prices", {}),
        "location": [],
        "item": [],
        "npc": [],
        "player": [],
        "script": [],
    }
    gates: list[dict[str, Any]] = []
    placed_npcs = 0
    centre = (side - 1) // 2
    cells = [(c, r) for r in range(side) for c in range(side) if (c, r) != (centre, centre)]
    for k in range(copies):
        # Copy 0 stays in place (the centre of a square grid); the others fill the cells around.
        dx, dz = 0.0, 0.0
        if k:
            col, row = cells[k - 1]
            dx, dz = (col - centre) * width, (row - centre) * depth

        def move(d: dict[str, Any], k: int = k, dx: float = dx, dz: float = dz) -> dict[str, Any]:
            d = dict(d)
            if "at" in d:
                d["at"] = _suffix(d["at"], k)
            if "x" in d:
                d["x"], d["z"] = d["x"] + dx, d["z"] + dz
            return d

        for loc in base.get("location", []):
            out["location"].append(
                {"name": _suffix(loc["name"], k), "x": loc["x"] + dx, "z": loc["z"] + dz}
            )
        for item in base.get("item", []):
            out["item"].append(move(item))
        for gate in spec.gates:
            g = move(gate.model_dump(exclude_none=True))
            g["key_holders"] = [_suffix(h, k) for h in gate.key_holders]
            gates.append(g)
        for npc in base.get("npc", []):
            if placed_npcs >= npcs:
                break
            n = move(npc)
            n["id"] = _suffix(npc["id"], k)
            n["character"] = npc.get("character") or npc["id"]
            out["npc"].append(n)
            placed_npcs += 1
        for player in base.get("player", []):
            p = move(player)
            p["id"] = _suffix(player["id"], k)
            out["player"].append(p)
        for step in base.get("script", []):
            s = dict(step)
            s["player"] = _suffix(step.get("player", "player"), k)
            if "to" in s:
                s["to"] = _suffix(s["to"], k)
            if isinstance(s.get("move"), str):
                s["move"] = _suffix(s["move"], k)
            elif isinstance(s.get("move"), list):
                s["move"] = [s["move"][0] + dx, s["move"][1] + dz]
            out["script"].append(s)
    if gates:
        out["gate"] = gates
    out["world"]["bounds"] = {
        "min_x": b.min_x - centre * width,
        "max_x": b.max_x + (side - 1 - centre) * width,
        "min_z": b.min_z - centre * depth,
        "max_z": b.max_z + (side - 1 - centre) * depth,
    }
    drop_dangling_addressees(out)
    return world_from_dict(out, path=f"<{spec.world.name} x{copies}>")
