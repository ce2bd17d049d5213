"""The simulated world: a sans-I/O state machine over simulated time.

No asyncio and no sockets here, so every game rule is unit-testable by calling ``start``,
``cancel``, ``speak`` and ``tick`` and looking at what comes out. The runner (``sim.runner``)
is the only thing that connects this to the bridge.

Time is counted in ticks (``world.tick_ms`` of simulated time each); ``tick()`` advances one
tick and returns what happened: finished actions (``ActionDone``), perceptions to send to
NPCs as bridge events (``Perception``), and notes for the transcript (``WorldNote``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sim.world_file import ScriptStep, WorldSpec

__all__ = [
    "ActionDone",
    "ActionFailed",
    "Output",
    "Perception",
    "World",
    "WorldNote",
]

# Actions that take simulated time; a new one interrupts the one in progress.
_ONGOING = frozenset({"goToLocation", "wait", "follow"})
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


class World:
    """The running world built from a ``WorldSpec``. Mutable; one per run."""

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

    # ----------------------------------------------------------------- actions

    def start(self, call_id: str, npc: str, cap: str, args: Mapping[str, Any]) -> list[Output]:
        """Begin a capability call. Instant actions finish in the returned outputs; timed ones
        finish in a later ``tick()``. Starting a timed action interrupts the NPC's previous one."""
        out = _Outbox()
        if npc not in self.entities or self.entities[npc].kind != "npc":
            self._done(out, call_id, npc, cap, error=ActionFailed("UNKNOWN_NPC", f"no NPC {npc!r}"))
            return out.items
        if call_id in self._by_call:
            # A conforming game never runs an id twice; the bridge client caches, this is a guard.
            return out.items
        handler = getattr(self, f"_cap_{cap}", None)
        if handler is None:
            self._done(
                out,
                call_id,
                npc,
                cap,
                error=ActionFailed("UNKNOWN_CAPABILITY", f"this world cannot {cap!r}"),
            )
            return out.items
        if cap in _ONGOING and npc in self._ongoing:
            self._interrupt(out, npc, "INTERRUPTED", f"interrupted by {cap}")
        handler(out, call_id, self.entities[npc], args)
        return out.items

    def cancel(self, call_id: str, reason: str = "cancelled") -> list[Output]:
        """Stop a timed action (the runtime gave up on it). Unknown or finished ids: nothing."""
        out = _Outbox()
        npc = self._by_call.get(call_id)
        if npc is not None:
            self._interrupt(out, npc, "CANCELLED", reason)
        return out.items

    def speak(self, speaker: str, text: str) -> list[Output]:
        """Speech from anyone (an NPC's streamed line, a player): heard within earshot."""
        out = _Outbox()
        self._say(out, self.entities[speaker], text, None)
        return out.items

    def tick(self) -> list[Output]:
        """Advance simulated time by one tick."""
        self.ticks += 1
        out = _Outbox()
        now = self.t
        while self._next_step < len(self._script) and self._script[self._next_step].at <= now:
            self._run_step(out, self._script[self._next_step])
            self._next_step += 1
        moved: list[_Entity] = []
        for pid, (tx, tz) in list(self._walking.items()):
            ent = self.entities[pid]
            if self._step_towards(ent, tx, tz, 0.0):
                del self._walking[pid]
                self._note(out, "move", who=pid, x=ent.x, z=ent.z, phase="stop")
            moved.append(ent)
        for npc, act in list(self._ongoing.items()):
            ent = self.entities[npc]
            if act.cap == "goToLocation":
                arrived = self._step_towards(ent, act.tx, act.tz, 0.0)
                moved.append(ent)
                if arrived:
                    self._note(out, "move", who=npc, x=ent.x, z=ent.z, phase="stop")
                    self._finish(
                        out, act, {"x": round(ent.x, 3), "z": round(ent.z, 3), "arrived": True}
                    )
            elif act.cap == "wait":
                if now + _EPS >= act.until:
                    self._finish(out, act, {"waited": round(now - act.started, 3)})
            elif act.cap == "follow":
                self._follow_tick(out, act, ent, moved)
        if moved:
            self._sight_check(out, moved)
        return out.items

    # ------------------------------------------------------------ capabilities

    def _cap_goToLocation(
        self, out: _Outbox, call_id: str, ent: _Entity, args: Mapping[str, Any]
    ) -> None:
        x, z = _number(args, "x"), _number(args, "z")
        if x is None or z is None:
            self._done(
                out,
                call_id,
                ent.id,
                "goToLocation",
                error=ActionFailed("BAD_INPUT", "x and z must be finite numbers"),
            )
            return
        if not self.spec.world.bounds.contains(x, z):
            b = self.spec.world.bounds
            self._done(
                out,
                call_id,
                ent.id,
                "goToLocation",
                error=ActionFailed(
                    "OUT_OF_BOUNDS",
                    f"({x}, {z}) is outside the world: "
                    f"x {b.min_x}..{b.max_x}, z {b.min_z}..{b.max_z}",
                ),
            )
            return
        if math.hypot(ent.x - x, ent.z - z) <= _EPS:
            self._done(out, call_id, ent.id, "goToLocation", data={"x": x, "z": z, "arrived": True})
            return
        self._note(out, "move", who=ent.id, x=ent.x, z=ent.z, phase="start", to={"x": x, "z": z})
        self._begin(_Ongoing(call_id, ent.id, "goToLocation", self.t, tx=x, tz=z))

    def _cap_wait(self, out: _Outbox, call_id: str, ent: _Entity, args: Mapping[str, Any]) -> None:
        seconds = _number(args, "seconds")
        if seconds is None or seconds < 0:
            self._done(
                out,
                call_id,
                ent.id,
                "wait",
                error=ActionFailed("BAD_INPUT", "seconds must be a number >= 0"),
            )
            return
        if seconds <= _EPS:
            self._done(out, call_id, ent.id, "wait", data={"waited": 0.0})
            return
        self._begin(_Ongoing(call_id, ent.id, "wait", self.t, until=self.t + seconds))

    def _cap_follow(
        self, out: _Outbox, call_id: str, ent: _Entity, args: Mapping[str, Any]
    ) -> None:
        target = _text(args, "target")
        distance = 2.0 if args.get("distance") is None else _number(args, "distance")
        if target is None or target not in self.entities or target == ent.id:
            self._done(
                out,
                call_id,
                ent.id,
                "follow",
                error=ActionFailed("UNKNOWN_TARGET", f"nobody called {target!r} to follow"),
            )
            return
        if distance is None or not 0 < distance <= 50:
            self._done(
                out,
                call_id,
                ent.id,
                "follow",
                error=ActionFailed("BAD_INPUT", "distance must be a number in (0, 50]"),
            )
            return
        self._note(out, "move", who=ent.id, x=ent.x, z=ent.z, phase="start", following=target)
        self._begin(_Ongoing(call_id, ent.id, "follow", self.t, target=target, distance=distance))

    def _cap_openGate(
        self, out: _Outbox, call_id: str, ent: _Entity, args: Mapping[str, Any]
    ) -> None:
        if not self.gates:
            self._done(
                out,
                call_id,
                ent.id,
                "openGate",
                error=ActionFailed("NO_GATE", "there is no gate in this world"),
            )
            return
        mine = [g for g in self.gates if not g.key_holders or ent.id in g.key_holders]
        if not mine:
            self._done(
                out,
                call_id,
                ent.id,
                "openGate",
                error=ActionFailed("NOT_ALLOWED", f"{ent.id} has no key to the gate"),
            )
            return
        gate = min(mine, key=lambda g: math.hypot(ent.x - g.x, ent.z - g.z))
        far = math.hypot(ent.x - gate.x, ent.z - gate.z)
        if far > gate.reach:
            self._done(
                out,
                call_id,
                ent.id,
                "openGate",
                error=ActionFailed(
                    "TOO_FAR", f"the gate is {far:.1f} m away; walk within {gate.reach} m first"
                ),
            )
            return
        already = gate.open
        if not already:
            gate.open, gate.opened_at, gate.opened_by = True, self.t, ent.id
            self._note(out, "gate", open=True, by=ent.id, x=gate.x, z=gate.z)
        self._done(out, call_id, ent.id, "openGate", data={"open": True, "already_open": already})

    def _cap_pickUp(
        self, out: _Outbox, call_id: str, ent: _Entity, args: Mapping[str, Any]
    ) -> None:
        item = _text(args, "item")
        reach = self.spec.world.reach
        for g in self.ground:
            if g.name == item and math.hypot(g.x - ent.x, g.z - ent.z) <= reach:
                g.count -= 1
                if g.count == 0:
                    self.ground.remove(g)
                ent.holding.append(g.name)
                self._note(out, "item", item=g.name, **{"from": "ground"}, to=ent.id)
                self._done(
                    out,
                    call_id,
                    ent.id,
                    "pickUp",
                    data={"item": g.name, "holding": list(ent.holding)},
                )
                self._perceive_state(out, ent)
                return
        self._done(
            out,
            call_id,
            ent.id,
            "pickUp",
            error=ActionFailed("NOT_HERE", f"no {item!r} lying within {reach} m"),
        )

    def _cap_giveItem(
        self, out: _Outbox, call_id: str, ent: _Entity, args: Mapping[str, Any]
    ) -> None:
        item, to = _text(args, "item"), _text(args, "to")
        error = self._transfer(out, ent, item, to)
        if error is not None:
            self._done(out, call_id, ent.id, "giveItem", error=error)
            return
        self._done(
            out,
            call_id,
            ent.id,
            "giveItem",
            data={"item": item, "to": to, "holding": list(ent.holding)},
        )
        self._perceive_state(out, ent)

    def _cap_say(self, out: _Outbox, call_id: str, ent: _Entity, args: Mapping[str, Any]) -> None:
        text = _text(args, "text")
        if text is None:
            self._done(
                out, call_id, ent.id, "say", error=ActionFailed("BAD_INPUT", "text is empty")
            )
            return
        heard_by = self._say(out, ent, text, None)
        self._done(out, call_id, ent.id, "say", data={"heard_by": heard_by})

    def _cap_emote(self, out: _Outbox, call_id: str, ent: _Entity, args: Mapping[str, Any]) -> None:
        kind = _text(args, "kind")
        if kind is None:
            self._done(
                out, call_id, ent.id, "emote", error=ActionFailed("BAD_INPUT", "kind is empty")
            )
            return
        self._note(out, "emote", who=ent.id, kind=kind)
        self._done(out, call_id, ent.id, "emote", data={"kind": kind})

    # ----------------------------------------------------------------- helpers

    def _transfer(
        self, out: _Outbox, giver: _Entity, item: str | None, to: str | None
    ) -> ActionFailed | None:
        if item is None or item not in giver.holding:
            return ActionFailed("NOT_HELD", f"{giver.id} is not holding {item!r}")
        receiver = self.entities.get(to or "")
        if receiver is None or receiver.id == giver.id:
            return ActionFailed("UNKNOWN_TARGET", f"nobody called {to!r} to give to")
        far = self._dist(giver, receiver)
        if far > self.spec.world.reach:
            return ActionFailed(
                "TOO_FAR",
                f"{receiver.id} is {far:.1f} m away; within {self.spec.world.reach} m to give",
            )
        price = self.spec.prices.get(item, 0)
        paid = 0
        if giver.kind == "npc" and receiver.kind == "player" and price > 0:
            if receiver.gold < price:
                return ActionFailed(
                    "CANNOT_PAY", f"{receiver.id} has {receiver.gold} gold; {item} costs {price}"
                )
            self._pay(receiver, giver, price)
            paid = price
        giver.holding.remove(item)
        receiver.holding.append(item)
        self._note(out, "item", item=item, **{"from": giver.id}, to=receiver.id, paid=paid)
        if receiver.kind == "npc":
            self._perceive(out, receiver.id, "received", {"item": item, "from": giver.id})
            self._perceive_state(out, receiver)
        return None

    def _pay(self, payer: _Entity, payee: _Entity, amount: int) -> None:
        payer.gold -= amount
        payee.gold += amount
        payer.min_gold = min(payer.min_gold, payer.gold)
        payee.min_gold = min(payee.min_gold, payee.gold)

    def _say(self, out: _Outbox, speaker: _Entity, text: str, to: str | None) -> list[str]:
        earshot = self.spec.world.earshot
        self._note(out, "speech", who=speaker.id, text=text, to=to)
        heard: list[str] = []
        for ent in self._near(speaker):
            if ent.kind == "npc" and ent.id != speaker.id and self._dist(ent, speaker) <= earshot:
                heard.append(ent.id)
                self._perceive(out, ent.id, "heard", {"speaker": speaker.id, "text": text})
        return heard

    def _run_step(self, out: _Outbox, step: ScriptStep) -> None:
        player = self.entities[step.player]
        self._note(
            out,
            "player",
            player=player.id,
            action=step.action,
            **{
                k: v
                for k, v in step.model_dump().items()
                if k in ("say", "to", "move", "emote", "give") and v is not None
            },
        )
        if step.say is not None:
            heard = self._say(out, player, step.say, step.to)
            if step.to is not None and step.to not in heard:
                self._note(
                    out,
                    "unheard",
                    player=player.id,
                    to=step.to,
                    text=step.say,
                    why=f"{step.to} is beyond earshot ({self.spec.world.earshot} m)",
                )
        elif step.move is not None:
            target = (
                self.spec.location_xz(step.move)
                if isinstance(step.move, str)
                else (step.move[0], step.move[1])
            )
            if target is not None:
                self._walking[player.id] = target
                self._note(
                    out,
                    "move",
                    who=player.id,
                    x=player.x,
                    z=player.z,
                    phase="start",
                    to={"x": target[0], "z": target[1]},
                )
        elif step.emote is not None:
            self._note(out, "emote", who=player.id, kind=step.emote)
        elif step.give is not None:
            if step.give == "gold":
                receiver = self.entities.get(step.to or "")
                if (
                    player.gold < 1
                    or receiver is None
                    or self._dist(player, receiver) > self.spec.world.reach
                ):
                    self._note(out, "script_failed", player=player.id, give="gold", to=step.to)
                    return
                self._pay(player, receiver, 1)
                self._note(out, "item", item="gold", **{"from": player.id}, to=receiver.id, paid=0)
                if receiver.kind == "npc":
                    self._perceive(
                        out, receiver.id, "received", {"item": "gold", "from": player.id}
                    )
                return
            error = self._transfer(out, player, step.give, step.to)
            if error is not None:
                self._note(
                    out,
                    "script_failed",
                    player=player.id,
                    give=step.give,
                    to=step.to,
                    error=error.code,
                    message=error.message,
                )

    def _follow_tick(self, out: _Outbox, act: _Ongoing, ent: _Entity, moved: list[_Entity]) -> None:
        target = self.entities.get(act.target)
        now = self.t
        if target is None:
            self._finish(out, act, error=ActionFailed("UNKNOWN_TARGET", f"{act.target} left"))
            return
        gap = self._dist(ent, target)
        if gap > act.distance + _EPS:
            ratio = (gap - act.distance) / gap
            self._step_towards(
                ent, ent.x + (target.x - ent.x) * ratio, ent.z + (target.z - ent.z) * ratio, 0.0
            )
            moved.append(ent)
        settled = now - max(target.last_moved, act.started) >= self.spec.world.follow_settle_s
        close = self._dist(ent, target) <= act.distance + 0.5
        if (settled and close) or now - act.started >= self.spec.world.follow_limit_s:
            self._note(out, "move", who=ent.id, x=ent.x, z=ent.z, phase="stop")
            self._finish(
                out,
                act,
                {
                    "target": act.target,
                    "x": round(ent.x, 3),
                    "z": round(ent.z, 3),
                    "stopped": "target stopped" if settled and close else "time limit",
                },
            )

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
