"""The capabilities the world implements: walking, waiting, following, the gate, items and
sales, speech and emotes.

Each ``_cap_<name>`` handler is a game rule: it validates its arguments, checks the rule
(reach, keys, payment), changes the state and emits outputs. Failures are data
(``ActionFailed``), sent back to the model as the tool's error, never exceptions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sim._world_state import (
    _EPS,
    ActionFailed,
    _Entity,
    _number,
    _Ongoing,
    _Outbox,
    _text,
    _WorldState,
)


class _WorldRules(_WorldState):
    """The game rules over ``_WorldState``; ``World.start`` dispatches to ``_cap_<name>``."""

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
