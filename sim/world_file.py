"""The ``world.toml`` format: typed, frozen specs of a world, loaded with located errors.

A spec is the designer's description; ``sim.world.World`` is the running state built from it.
Keeping them apart lets a scenario override parts of a spec (who stands where) without touching
the file, and lets tests build worlds from plain dicts. docs/simulation.md documents the format.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from capabilities.errors import field_path
from sim._toml import locate, read_toml
from sim.errors import Problem, SimFileError

__all__ = [
    "Bounds",
    "GateSpec",
    "ItemSpec",
    "LocationSpec",
    "NpcSpec",
    "PlayerSpec",
    "ScriptStep",
    "WorldSection",
    "WorldSpec",
    "drop_dangling_addressees",
    "load_world",
    "world_from_dict",
]

_ID = r"^[A-Za-z0-9_\-]{1,64}$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Bounds(_Spec):
    min_x: float = -100.0
    max_x: float = 100.0
    min_z: float = -100.0
    max_z: float = 100.0

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not (self.min_x < self.max_x and self.min_z < self.max_z):
            raise ValueError("min_x must be below max_x and min_z below max_z")
        for v in (self.min_x, self.max_x, self.min_z, self.max_z):
            if not math.isfinite(v):
                raise ValueError("bounds must be finite numbers")
        return self

    def contains(self, x: float, z: float) -> bool:
        return self.min_x <= x <= self.max_x and self.min_z <= z <= self.max_z


class WorldSection(_Spec):
    """Global rules. Distances in metres, times in seconds of simulated time."""

    name: str = "world"
    bounds: Bounds = Bounds()
    tick_ms: int = Field(100, ge=10, le=1000)
    walk_speed: float = Field(1.5, gt=0, le=50)
    earshot: float = Field(10.0, gt=0)
    sight: float = Field(20.0, gt=0)
    reach: float = Field(2.5, gt=0)
    follow_settle_s: float = Field(2.0, gt=0)
    follow_limit_s: float = Field(60.0, gt=0)


class _Placed(_Spec):
    """Something with a position: ``at = "location"`` or ``x``/``z``."""

    at: str | None = None
    x: float | None = None
    z: float | None = None

    @model_validator(mode="after")
    def _one_place(self) -> Self:
        has_xz = self.x is not None or self.z is not None
        if self.at is not None and has_xz:
            raise ValueError('give either at = "location" or x and z, not both')
        if has_xz and (self.x is None or self.z is None):
            raise ValueError("x and z go together")
        return self


class LocationSpec(_Spec):
    name: str = Field(pattern=_ID)
    x: float
    z: float


class ItemSpec(_Placed):
    name: str = Field(pattern=_ID)
    count: int = Field(1, ge=1, le=10_000)


class GateSpec(_Placed):
    open: bool = False
    reach: float = Field(5.0, gt=0)
    key_holders: list[str] = []


class NpcSpec(_Placed):
    id: str = Field(pattern=_ID)
    character: str | None = Field(None, pattern=_ID)
    holding: list[str] = []
    gold: int = 0

    @property
    def character_id(self) -> str:
        return self.character or self.id


class PlayerSpec(_Placed):
    id: str = Field(pattern=_ID)
    holding: list[str] = []
    gold: int = 0


class ScriptStep(_Spec):
    """One scripted player action at simulated second ``at``. Exactly one action key."""

    at: float = Field(ge=0)
    player: str = "player"
    say: str | None = Field(None, min_length=1, max_length=2000)
    to: str | None = None
    move: str | list[float] | None = None
    emote: str | None = None
    give: str | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Self:
        actions = [k for k in ("say", "move", "emote", "give") if getattr(self, k) is not None]
        if len(actions) != 1:
            raise ValueError("a script step has exactly one of say, move, emote, give")
        if self.give is not None and self.to is None:
            raise ValueError('give needs to = "npc id"')
        if isinstance(self.move, list) and len(self.move) != 2:
            raise ValueError("move = [x, z] has two numbers")
        return self

    @property
    def action(self) -> str:
        for key in ("say", "move", "emote", "give"):
            if getattr(self, key) is not None:
                return key
        raise AssertionError("validated to have one action")


class WorldSpec(_Spec):
    world: WorldSection = WorldSection()
    location: list[LocationSpec] = []
    item: list[ItemSpec] = []
    gate: GateSpec | list[GateSpec] | None = None  # [gate] or several [[gate]]
    npc: list[NpcSpec] = []
    player: list[PlayerSpec] = []
    script: list[ScriptStep] = []
    prices: dict[str, int] = {}

    @property
    def gates(self) -> list[GateSpec]:
        if self.gate is None:
            return []
        return list(self.gate) if isinstance(self.gate, list) else [self.gate]

    def place(self, thing: _Placed) -> tuple[float, float]:
        """Coordinates of a placed thing (references are checked at load time)."""
        if thing.x is not None and thing.z is not None:
            return thing.x, thing.z
        for loc in self.location:
            if loc.name == thing.at:
                return loc.x, loc.z
        return 0.0, 0.0

    def location_xz(self, name: str) -> tuple[float, float] | None:
        for loc in self.location:
            if loc.name == name:
                return loc.x, loc.z
        return None


def check_references(spec: WorldSpec) -> list[tuple[tuple[str | int, ...], str]]:
    """Cross-field rules pydantic cannot see: names that must exist, ids that must be unique,
    positions inside the bounds. Returned as (location, message) to be located in the file."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    names = {loc.name for loc in spec.location}
    bounds = spec.world.bounds
    seen: set[str] = set()
    for i, loc in enumerate(spec.location):
        if loc.name in seen:
            found.append((("location", i, "name"), f"duplicate location {loc.name!r}"))
        seen.add(loc.name)
        if not bounds.contains(loc.x, loc.z):
            found.append((("location", i, "x"), "location lies outside world.bounds"))

    def placed(key: tuple[str | int, ...], thing: _Placed, required: bool = True) -> None:
        if thing.at is not None and thing.at not in names:
            found.append(((*key, "at"), f"unknown location {thing.at!r}"))
        elif thing.at is None and thing.x is None:
            if required:
                found.append((key, 'needs at = "location" or x and z'))
        elif thing.x is not None and thing.z is not None and not bounds.contains(thing.x, thing.z):
            found.append(((*key, "x"), "position lies outside world.bounds"))

    for i, item in enumerate(spec.item):
        placed(("item", i), item)
    if isinstance(spec.gate, list):
        for i, gate in enumerate(spec.gate):
            placed(("gate", i), gate)
    elif spec.gate is not None:
        placed(("gate",), spec.gate)
    ids: set[str] = set()
    everyone: list[tuple[str, int, NpcSpec | PlayerSpec]] = [
        *(("npc", i, n) for i, n in enumerate(spec.npc)),
        *(("player", i, p) for i, p in enumerate(spec.player)),
    ]
    for kind, i, ent in everyone:
        if ent.id in ids:
            why = f"duplicate id {ent.id!r} (npc and player ids share one namespace)"
            found.append(((kind, i, "id"), why))
        ids.add(ent.id)
        placed((kind, i), ent)
    players = {p.id for p in spec.player}
    npcs = {n.id for n in spec.npc}
    for i, step in enumerate(spec.script):
        if step.player not in players:
            found.append((("script", i, "player"), f"unknown player {step.player!r}"))
        if step.to is not None and step.to not in npcs | players:
            found.append((("script", i, "to"), f"unknown npc or player {step.to!r}"))
        if isinstance(step.move, str) and step.move not in names:
            found.append((("script", i, "move"), f"unknown location {step.move!r}"))
        if isinstance(step.move, list) and not bounds.contains(step.move[0], step.move[1]):
            found.append((("script", i, "move"), "target lies outside world.bounds"))
    return found


def drop_dangling_addressees(data: dict[str, Any]) -> None:
    """Script steps addressed ``to`` an NPC that a set-up or a scale-down left out keep their
    action but lose the addressee (``to`` only says whom the line is meant for)."""
    ids = {e["id"] for e in data.get("npc", []) + data.get("player", [])}
    for step in data.get("script", []):
        if step.get("to") is not None and step["to"] not in ids and "give" not in step:
            del step["to"]


def problems_from(path: str, text: str | None, exc: ValidationError) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if isinstance(p, (str, int)))
        line = locate(text, loc) if text is not None else None
        out.append(Problem(path, line, field_path(loc) or None, err["msg"]))
    return out


def world_from_dict(
    data: Mapping[str, Any], *, path: str = "<world>", text: str | None = None
) -> WorldSpec:
    """Validate already-parsed data (a scenario's merged world, or a test's dict)."""
    try:
        spec = WorldSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise SimFileError(problems_from(path, text, exc)) from None
    found = check_references(spec)
    if found:
        raise SimFileError(
            [
                Problem(path, locate(text, loc) if text else None, field_path(loc), msg)
                for loc, msg in found
            ]
        )
    return spec


def load_world(path: Path) -> WorldSpec:
    """Load and check ``world.toml``; every problem found is reported at once."""
    data, text = read_toml(path)
    return world_from_dict(data, path=str(path), text=text)
