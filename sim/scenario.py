"""Scenario files: a set-up over a world, a player script, a duration, and assertions.

Assertions are evaluated from the run's transcript records and the world's end state only,
never from live objects, so a saved ``transcript.jsonl`` can be re-checked after the fact and
tests can check assertions without running anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from capabilities.errors import field_path
from sim._toml import locate, read_toml
from sim.errors import Problem, SimFileError
from sim.world_file import (
    ScriptStep,
    WorldSpec,
    drop_dangling_addressees,
    load_world,
    problems_from,
    world_from_dict,
)

__all__ = [
    "AssertionResult",
    "Expect",
    "Scenario",
    "ScenarioFile",
    "evaluate",
    "find_scenarios",
    "load_scenario",
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


class ScenarioSection(_Spec):
    name: str | None = None
    description: str = ""
    duration: float = Field(60.0, gt=0, le=86_400)
    world: str = "../world.toml"


class SetupEntity(_Spec):
    """Overrides one NPC or player of the world by id (or adds one; an added NPC may name
    its ``character``). Fields left out keep the world's values."""

    id: str
    character: str | None = None
    at: str | None = None
    x: float | None = None
    z: float | None = None
    holding: list[str] | None = None
    gold: int | None = None


class Setup(_Spec):
    npcs: list[str] | None = None  # spawn only these NPCs (default: all of the world's)
    gate_open: bool | None = None
    npc: list[SetupEntity] = []
    player: list[SetupEntity] = []


class SaidCheck(_Spec):
    npc: str
    contains: str = Field(min_length=1)
    name: str | None = None


class UsedCheck(_Spec):
    cap: str
    npc: str | None = None
    at_least: int = Field(1, ge=0)
    at_most: int | None = Field(None, ge=0)
    name: str | None = None


class HoldingCheck(_Spec):
    who: str
    item: str
    held: bool = True
    name: str | None = None


class GoldCheck(_Spec):
    who: str
    at_least: int | None = None
    at_most: int | None = None
    name: str | None = None


class Expect(_Spec):
    gate_open_by: float | None = Field(None, ge=0)
    gate_open: bool | None = None
    never: list[str] = []
    gold_never_negative: list[str] = []
    said: list[SaidCheck] = []
    used: list[UsedCheck] = []
    holding: list[HoldingCheck] = []
    gold: list[GoldCheck] = []

    _lists = field_validator("never", "gold_never_negative", mode="before")(_as_list)


class ScenarioFile(_Spec):
    scenario: ScenarioSection = ScenarioSection()
    setup: Setup = Setup()
    script: list[ScriptStep] | None = None
    expect: Expect = Expect()

    @model_validator(mode="after")
    def _has_checks(self) -> Self:
        e = self.expect
        if not (
            e.gate_open_by is not None
            or e.gate_open is not None
            or e.never
            or e.gold_never_negative
            or e.said
            or e.used
            or e.holding
            or e.gold
        ):
            raise ValueError("a scenario needs at least one assertion in [expect]")
        return self


@dataclass(frozen=True, slots=True)
class Scenario:
    """A scenario ready to run: its file, and the world with the set-up applied."""

    name: str
    path: Path
    spec: ScenarioFile
    world: WorldSpec

    @property
    def duration(self) -> float:
        return self.spec.scenario.duration

    @property
    def expect(self) -> Expect:
        return self.spec.expect


@dataclass(frozen=True, slots=True)
class AssertionResult:
    name: str
    passed: bool
    detail: str

    def as_record(self) -> dict[str, Any]:
        return {
            "type": "assertion",
            "name": self.name,
            "passed": self.passed,
            "detail": self.detail,
        }


def find_scenarios(project: Path) -> dict[str, Path]:
    """Scenario name -> file, for ``project/scenarios/*.toml`` (name = file stem)."""
    folder = project / "scenarios"
    return {p.stem: p for p in sorted(folder.glob("*.toml"))} if folder.is_dir() else {}


def _merge(base: WorldSpec, setup: Setup, script: list[ScriptStep] | None) -> dict[str, Any]:
    data = base.model_dump(exclude_none=True)
    if setup.npcs is not None:
        data["npc"] = [n for n in data["npc"] if n["id"] in setup.npcs]
    if setup.gate_open is not None and data.get("gate") is not None:
        gates = data["gate"] if isinstance(data["gate"], list) else [data["gate"]]
        for gate in gates:
            gate["open"] = setup.gate_open
    for kind, overrides in (("npc", setup.npc), ("player", setup.player)):
        for ov in overrides:
            fields = ov.model_dump(exclude_none=True)
            if kind == "player":
                fields.pop("character", None)
            existing = next((e for e in data[kind] if e["id"] == ov.id), None)
            if existing is None:
                data[kind].append(fields)
                continue
            if "at" in fields or "x" in fields:
                for key in ("at", "x", "z"):
                    existing.pop(key, None)
            existing.update(fields)
    if script is not None:
        data["script"] = [s.model_dump(exclude_none=True) for s in script]
    drop_dangling_addressees(data)
    return data


def load_scenario(path: Path) -> Scenario:
    """Load a scenario and the world it names (relative to the scenario file), apply the set-up.
    Problems in either file are reported with that file's name and line."""
    data, text = read_toml(path)
    try:
        spec = ScenarioFile.model_validate(data)
    except ValidationError as exc:
        raise SimFileError(problems_from(str(path), text, exc)) from None
    world_path = (path.parent / spec.scenario.world).resolve()
    base = load_world(world_path)
    merged = _merge(base, spec.setup, spec.script)
    try:
        world = world_from_dict(merged, path=str(path))
    except SimFileError as exc:
        # Located in the scenario file where the problem's field comes from the scenario.
        fixed = []
        for p in exc.problems:
            line = None
            if p.field:
                head = p.field.split("[")[0].split(".")[0]
                where: tuple[str, ...] = ("setup", head) if head in ("npc", "player") else (head,)
                line = locate(text, where)
            fixed.append(Problem(str(path), line, p.field, p.message))
        raise SimFileError(fixed) from None
    known = {n.id for n in world.npc} | {p.id for p in world.player}
    bad: list[Problem] = []
    checks: list[tuple[str, Sequence[Any], str]] = [
        ("said", spec.expect.said, "npc"),
        ("holding", spec.expect.holding, "who"),
        ("gold", spec.expect.gold, "who"),
    ]
    for key, items, attr in checks:
        for i, item in enumerate(items):
            if getattr(item, attr) not in known:
                loc: tuple[str | int, ...] = ("expect", key, i, attr)
                bad.append(
                    Problem(
                        str(path),
                        locate(text, loc),
                        field_path(loc),
                        f"unknown npc or player {getattr(item, attr)!r}",
                    )
                )
    for i, who in enumerate(spec.expect.gold_never_negative):
        if who not in known:
            loc = ("expect", "gold_never_negative")
            bad.append(
                Problem(
                    str(path),
                    locate(text, loc),
                    f"expect.gold_never_negative[{i}]",
                    f"unknown npc or player {who!r}",
                )
            )
    if bad:
        raise SimFileError(bad)
    return Scenario(spec.scenario.name or path.stem, path, spec, world)


# ----------------------------------------------------------------------------- evaluation


def _calls(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("type") == "call"]


def _lines(records: Iterable[Mapping[str, Any]], npc: str) -> list[str]:
    out = []
    for r in records:
        if r.get("npc") != npc:
            continue
        if r.get("type") == "line" and isinstance(r.get("text"), str):
            out.append(r["text"])
        elif r.get("type") == "call" and r.get("cap") == "say":
            args = r.get("args")
            if isinstance(args, Mapping) and isinstance(args.get("text"), str):
                out.append(args["text"])
    return out


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def evaluate(
    expect: Expect, records: Sequence[Mapping[str, Any]], end: Mapping[str, Any]
) -> list[AssertionResult]:
    """Check every assertion; each result names the assertion and says what actually happened.
    ``records`` are transcript records, ``end`` is ``World.snapshot()`` at the end of the run."""
    results: list[AssertionResult] = []
    add = results.append
    gate = end.get("gate")
    entities: Mapping[str, Mapping[str, Any]] = end.get("entities", {})
    calls = _calls(records)

    if expect.gate_open_by is not None:
        name = f"gate_open_by={expect.gate_open_by:g}"
        opened = gate.get("opened_at") if gate else None
        if gate is None:
            add(AssertionResult(name, False, "the world has no gate"))
        elif opened is None:
            add(
                AssertionResult(
                    name, False, f"the gate was never opened (run ended at t={end.get('t')})"
                )
            )
        else:
            ok = opened <= expect.gate_open_by
            add(AssertionResult(name, ok, f"opened by {gate.get('opened_by')} at t={opened:g}"))
    if expect.gate_open is not None:
        name = f"gate_open={str(expect.gate_open).lower()}"
        state = bool(gate and gate.get("open"))
        add(
            AssertionResult(
                name,
                state == expect.gate_open,
                f"the gate is {'open' if state else 'closed'} at the end",
            )
        )
    for cap in expect.never:
        uses = [c for c in calls if c.get("cap") == cap]
        detail = (
            f"{cap} was never called"
            if not uses
            else f"{cap} called {len(uses)}x, first by {uses[0].get('npc')} at t={uses[0].get('t')}"
        )
        add(AssertionResult(f"never {cap}", not uses, detail))
    for who in expect.gold_never_negative:
        ent = entities.get(who)
        if ent is None:
            add(AssertionResult(f"gold_never_negative {who}", False, f"{who} is not in the world"))
            continue
        low = int(ent.get("min_gold", 0))
        add(
            AssertionResult(
                f"gold_never_negative {who}",
                low >= 0,
                f"lowest gold {low}, final {ent.get('gold')}",
            )
        )
    for said in expect.said:
        name = said.name or f"said {said.npc} ~ {said.contains!r}"
        lines = _lines(records, said.npc)
        hit = next((line for line in lines if said.contains.lower() in line.lower()), None)
        if hit is not None:
            add(AssertionResult(name, True, f"{said.npc} said {_short(hit)!r}"))
        else:
            last = f"; last line {_short(lines[-1])!r}" if lines else ""
            add(
                AssertionResult(
                    name,
                    False,
                    f"{said.npc} said {len(lines)} line(s), none with {said.contains!r}{last}",
                )
            )
    for used in expect.used:
        match = [
            c
            for c in calls
            if c.get("cap") == used.cap and (used.npc is None or c.get("npc") == used.npc)
        ]
        who = f" by {used.npc}" if used.npc else ""
        bound = f">={used.at_least}" + (f",<={used.at_most}" if used.at_most is not None else "")
        name = used.name or f"used {used.cap}{who} {bound}"
        ok = len(match) >= used.at_least and (used.at_most is None or len(match) <= used.at_most)
        add(AssertionResult(name, ok, f"{used.cap}{who} called {len(match)}x"))
    for hold in expect.holding:
        name = hold.name or f"{hold.who} {'holds' if hold.held else 'does not hold'} {hold.item}"
        items = list(entities.get(hold.who, {}).get("holding", []))
        has = hold.item in items
        add(AssertionResult(name, has == hold.held, f"{hold.who} holds {items or 'nothing'}"))
    for g in expect.gold:
        bounds = []
        if g.at_least is not None:
            bounds.append(f">={g.at_least}")
        if g.at_most is not None:
            bounds.append(f"<={g.at_most}")
        name = g.name or f"gold {g.who} {','.join(bounds) or 'any'}"
        value = entities.get(g.who, {}).get("gold")
        ok = (
            isinstance(value, int)
            and (g.at_least is None or value >= g.at_least)
            and (g.at_most is None or value <= g.at_most)
        )
        add(AssertionResult(name, ok, f"{g.who} has {value} gold"))
    return results
