"""The simulated world: a sans-I/O state machine over simulated time.

No asyncio and no sockets here, so every game rule is unit-testable by calling ``start``,
``cancel``, ``speak`` and ``tick`` and looking at what comes out. The runner (``sim.runner``)
is the only thing that connects this to the bridge.

Time is counted in ticks (``world.tick_ms`` of simulated time each); ``tick()`` advances one
tick and returns what happened: finished actions (``ActionDone``), perceptions to send to
NPCs as bridge events (``Perception``), and notes for the transcript (``WorldNote``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sim._world_rules import _WorldRules
from sim._world_state import (
    _EPS,
    ActionDone,
    ActionFailed,
    Output,
    Perception,
    WorldNote,
    _Entity,
    _Outbox,
)
from sim.world_file import ScriptStep

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


class World(_WorldRules):
    """The running world built from a ``WorldSpec``. Mutable; one per run."""

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

    # ------------------------------------------------------------------ script

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
