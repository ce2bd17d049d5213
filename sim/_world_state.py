"""The world's state: what exists where, what it is doing, and how it comes out as outputs.

The records the world is made of (entities, ongoing actions, ground items, gates), the spatial
grid that keeps sight and hearing local, the bookkeeping of timed actions, and the output helpers
every rule uses. The game rules (``sim._world_rules``) and the clock and entry points
(``sim.world``) build on this; nothing here decides what an action does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sim.world_file import ScriptStep, WorldSpec

_EPS = 1e-6


@dataclass(frozen=True, slots=True)
class ActionFailed:
    """A game-rule failure, sent to the model as the tool's error (code, message)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ActionDone:
    call_id: str
    npc: str
    cap: str
    t: float
    data: dict[str, Any] | None = None
    error: ActionFailed | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class Perception:
    """What an NPC perceives, sent as a bridge ``event {npc, kind, data}``."""

    npc: str
    kind: str
    data: dict[str, Any]
    t: float


@dataclass(frozen=True, slots=True)
class WorldNote:
    """Something the transcript and the report need (a path point, the gate, a trade)."""

    kind: str
    data: dict[str, Any]
    t: float


Output = ActionDone | Perception | WorldNote


@dataclass(slots=True)
class _Entity:
    id: str
    kind: str  # "npc" | "player"
    x: float
    z: float
    holding: list[str]
    gold: int
    character: str | None = None
    min_gold: int = 0
    last_moved: float = 0.0


@dataclass(slots=True)
class _Ongoing:
    call_id: str
    npc: str
    cap: str
    started: float
    tx: float = 0.0
    tz: float = 0.0
    until: float = 0.0
    target: str = ""
    distance: float = 2.0


@dataclass(slots=True)
class _Ground:
    name: str
    x: float
    z: float
    count: int


@dataclass(slots=True)
class _Gate:
    x: float
    z: float
    open: bool
    reach: float
    key_holders: frozenset[str]
    opened_at: float | None = None
    opened_by: str | None = None


def _number(args: Mapping[str, Any], key: str) -> float | None:
    value = args.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _text(args: Mapping[str, Any], key: str) -> str | None:
    value = args.get(key)
    return value if isinstance(value, str) and value else None


@dataclass(slots=True)
class _Outbox:
    items: list[Output] = field(default_factory=list)


class _WorldState:
    """The running world's state built from a ``WorldSpec``; ``World`` adds the rules and clock."""

    def __init__(self, spec: WorldSpec) -> None:
        self.spec = spec
        rules = spec.world
        self.tick_s = rules.tick_ms / 1000.0
        self.ticks = 0
        self.entities: dict[str, _Entity] = {}
        for npc in spec.npc:
            x, z = spec.place(npc)
            self.entities[npc.id] = _Entity(
                npc.id, "npc", x, z, list(npc.holding), npc.gold, npc.character_id, npc.gold
            )
        for player in spec.player:
            x, z = spec.place(player)
            self.entities[player.id] = _Entity(
                player.id, "player", x, z, list(player.holding), player.gold, None, player.gold
            )
        self.ground: list[_Ground] = []
        for item in spec.item:
            x, z = spec.place(item)
            self.ground.append(_Ground(item.name, x, z, item.count))
        self.gates: list[_Gate] = []
        for g in spec.gates:
            gx, gz = spec.place(g)
            self.gates.append(_Gate(gx, gz, g.open, g.reach, frozenset(g.key_holders)))
        self._ongoing: dict[str, _Ongoing] = {}
        self._by_call: dict[str, str] = {}
        self._walking: dict[str, tuple[float, float]] = {}  # players moved by the script
        self._script: list[ScriptStep] = sorted(spec.script, key=lambda s: s.at)
        self._next_step = 0
        # A uniform grid (cells as wide as the longest sense) keeps hearing and sight checks
        # local: 1,000 NPCs cost what their neighbourhoods cost, not 1,000².
        self._cell_size = max(rules.sight, rules.earshot)
        self._grid: dict[tuple[int, int], set[str]] = {}
        self._cell_of: dict[str, tuple[int, int]] = {}
        for ent in self.entities.values():
            self._regrid(ent)
        self._sees: dict[str, set[str]] = {}  # watcher npc -> who it currently sees
        self._seen_by: dict[str, set[str]] = {}  # who -> npcs currently seeing them
        for a in self.entities.values():
            if a.kind != "npc":
                continue
            for b in self._near(a):
                if b.id != a.id and self._dist(a, b) <= rules.sight:
                    self._sees.setdefault(a.id, set()).add(b.id)
                    self._seen_by.setdefault(b.id, set()).add(a.id)

    # ----------------------------------------------------------------- queries

    @property
    def t(self) -> float:
        """Simulated seconds since the start."""
        return round(self.ticks * self.tick_s, 6)

    @property
    def npc_ids(self) -> list[str]:
        return [e.id for e in self.entities.values() if e.kind == "npc"]

    def character_of(self, npc: str) -> str:
        ent = self.entities[npc]
        return ent.character or ent.id

    def position(self, who: str) -> tuple[float, float]:
        ent = self.entities[who]
        return ent.x, ent.z

    def holding(self, who: str) -> list[str]:
        return list(self.entities[who].holding)

    def gold(self, who: str) -> int:
        return self.entities[who].gold

    def min_gold(self, who: str) -> int:
        return self.entities[who].min_gold

    def busy(self, npc: str) -> bool:
        """True while an action of ``npc`` is waiting on simulated time."""
        return npc in self._ongoing

    @property
    def pending_calls(self) -> int:
        return len(self._by_call)

    @property
    def script_done(self) -> bool:
        return self._next_step >= len(self._script) and not self._walking

    @property
    def next_script_t(self) -> float | None:
        return self._script[self._next_step].at if self._next_step < len(self._script) else None

    def state_of(self, who: str) -> dict[str, Any]:
        ent = self.entities[who]
        return {
            "position": {"x": round(ent.x, 3), "z": round(ent.z, 3)},
            "holding": list(ent.holding),
            "gold": ent.gold,
        }

    def snapshot(self) -> dict[str, Any]:
        """The end state, as plain data (summary.json, report, assertions)."""
        gates = [
            {
                "x": g.x,
                "z": g.z,
                "open": g.open,
                "opened_at": g.opened_at,
                "opened_by": g.opened_by,
            }
            for g in self.gates
        ]
        return {
            "t": self.t,
            "entities": {
                e.id: {**self.state_of(e.id), "kind": e.kind, "min_gold": e.min_gold}
                for e in self.entities.values()
            },
            "ground": [{"item": g.name, "x": g.x, "z": g.z, "count": g.count} for g in self.ground],
            "gate": gates[0] if gates else None,  # the first gate: what scenarios check
            "gates": gates,
        }

    # ----------------------------------------------------------- space, sight

    def _step_towards(self, ent: _Entity, tx: float, tz: float, keep: float) -> bool:
        dx, dz = tx - ent.x, tz - ent.z
        gap = math.hypot(dx, dz)
        step = self.spec.world.walk_speed * self.tick_s
        if gap - keep <= step + _EPS:
            ent.x, ent.z = tx, tz
        else:
            ent.x += dx / gap * step
            ent.z += dz / gap * step
        ent.last_moved = self.t
        self._regrid(ent)
        return math.hypot(tx - ent.x, tz - ent.z) <= _EPS

    def _sight_check(self, out: _Outbox, moved: list[_Entity]) -> None:
        sight = self.spec.world.sight
        for mover in {m.id: m for m in moved}.values():
            candidates = {e.id for e in self._near(mover)}
            candidates |= self._sees.get(mover.id, set()) | self._seen_by.get(mover.id, set())
            candidates.discard(mover.id)
            for other_id in sorted(candidates):
                other = self.entities[other_id]
                inside = self._dist(mover, other) <= sight
                for watcher, what in ((other, mover), (mover, other)):
                    if watcher.kind != "npc":
                        continue
                    seen = self._sees.setdefault(watcher.id, set())
                    if inside and what.id not in seen:
                        seen.add(what.id)
                        self._seen_by.setdefault(what.id, set()).add(watcher.id)
                        self._perceive(
                            out,
                            watcher.id,
                            "saw",
                            {
                                "what": what.id,
                                "where": {"x": round(what.x, 2), "z": round(what.z, 2)},
                            },
                        )
                    elif not inside and what.id in seen:
                        seen.discard(what.id)
                        self._seen_by.get(what.id, set()).discard(watcher.id)

    def _regrid(self, ent: _Entity) -> None:
        cell = (math.floor(ent.x / self._cell_size), math.floor(ent.z / self._cell_size))
        old = self._cell_of.get(ent.id)
        if old == cell:
            return
        if old is not None:
            self._grid[old].discard(ent.id)
        self._grid.setdefault(cell, set()).add(ent.id)
        self._cell_of[ent.id] = cell

    def _near(self, ent: _Entity) -> list[_Entity]:
        """Everyone in the 3x3 cells around ``ent`` (a superset of who is within a sense)."""
        cx, cz = self._cell_of[ent.id]
        found: list[_Entity] = []
        for ix in (cx - 1, cx, cx + 1):
            for iz in (cz - 1, cz, cz + 1):
                for who in self._grid.get((ix, iz), ()):
                    found.append(self.entities[who])
        found.sort(key=lambda e: e.id)  # deterministic event order
        return found

    # ------------------------------------------------------- timed actions, outputs

    def _begin(self, act: _Ongoing) -> None:
        self._ongoing[act.npc] = act
        self._by_call[act.call_id] = act.npc

    def _interrupt(self, out: _Outbox, npc: str, code: str, message: str) -> None:
        act = self._ongoing.get(npc)
        if act is None:
            return
        ent = self.entities[npc]
        if act.cap in ("goToLocation", "follow"):
            self._note(out, "move", who=npc, x=ent.x, z=ent.z, phase="stop")
        self._finish(
            out,
            act,
            error=ActionFailed(
                code, f"{message} at ({ent.x:.1f}, {ent.z:.1f}) after {self.t - act.started:.1f} s"
            ),
        )

    def _finish(
        self,
        out: _Outbox,
        act: _Ongoing,
        data: dict[str, Any] | None = None,
        error: ActionFailed | None = None,
    ) -> None:
        self._ongoing.pop(act.npc, None)
        self._by_call.pop(act.call_id, None)
        self._done(out, act.call_id, act.npc, act.cap, data=data, error=error)
        if act.cap in ("goToLocation", "follow"):
            self._perceive_state(out, self.entities[act.npc])

    def _done(
        self,
        out: _Outbox,
        call_id: str,
        npc: str,
        cap: str,
        data: dict[str, Any] | None = None,
        error: ActionFailed | None = None,
    ) -> None:
        out.items.append(
            ActionDone(call_id, npc, cap, self.t, data if error is None else None, error)
        )

    def _perceive(self, out: _Outbox, npc: str, kind: str, data: dict[str, Any]) -> None:
        out.items.append(Perception(npc, kind, data, self.t))

    def _perceive_state(self, out: _Outbox, ent: _Entity) -> None:
        if ent.kind == "npc":
            self._perceive(out, ent.id, "state", self.state_of(ent.id))

    def _note(self, out: _Outbox, note_kind: str, /, **data: Any) -> None:
        out.items.append(WorldNote(note_kind, data, self.t))

    @staticmethod
    def _dist(a: _Entity, b: _Entity) -> float:
        return math.hypot(a.x - b.x, a.z - b.z)
