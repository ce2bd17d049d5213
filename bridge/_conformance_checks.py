"""The conformance checks: one graded session, check by check, expected vs got.

``_Grader`` drives the scripted sequence (handshake, capabilities, call, resend, cancel,
unknown, speech, events, close) through the public ``Session`` API against the harness
described in ``bridge.conformance``, and turns every answer, timeout or lost connection
into a verdict with a hint; nothing a game sends can crash the kit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._conformance_report import CHECKS, PROFILE_CAPABILITIES, CheckResult, CheckStatus
from .errors import CallError, CallTimeout, CloseCode, Disconnected, GameError, UnknownCapability
from .messages import SUBPROTOCOL, Event, Spawn
from .session import Incoming, Session

if TYPE_CHECKING:
    from .conformance import ConformanceKit

log = logging.getLogger("bridge.conformance")

# Every msgpack width a codec must get right, unicode beyond the BMP, nesting, nil.
ECHO_ARGS: dict[str, Any] = {
    "text": "Halt! Wer da? Ünïcödé ✓ 🛡",
    "long": "abcdefghij" * 30,
    "ints": [0, 1, 127, 128, 255, 256, 65535, 65536, -1, -32, -33, -129, -32769, 2**31, 2**40],
    "negative_big": -(2**40),
    "float": 1.5,
    "floats": [-0.25, 1e300, 3.0],
    "yes": True,
    "no": False,
    "nothing": None,
    "list": [1, "two", 3.5, [True, None]],
    "map": {"k": "v", "nested": {"deep": [0, -1]}},
    "empty_list": [],
    "empty_map": {},
}
SPEECH = ("Halt! ", "Who goes there? ", "Ünïcödé ✓ 🛡")
EVENTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("heard", {"speaker": "kit", "text": "the password is oak ✓"}),
    ("saw", {"what": "a wolf", "where": [1.5, 0, -2.25]}),
    ("kit_custom", {"n": 7, "f": 0.5, "ok": True, "none": None, "tags": ["a", "b"], "m": {"x": 1}}),
)

_CLOSE_MEANING = {
    CloseCode.NORMAL: "normal closure",
    CloseCode.GOING_AWAY: "going away",
    CloseCode.UNSUPPORTED_DATA: "the game sent a text frame; binary frames only",
    CloseCode.INVALID_DATA: "the game sent malformed msgpack",
    CloseCode.POLICY: "policy violation (first frame not hello, no hello in time, or a flood)",
    CloseCode.TOO_BIG: "the game sent a frame larger than max_frame_bytes",
    CloseCode.INTERNAL: "internal error or keepalive (ping) timeout",
    CloseCode.TRY_AGAIN_LATER: "the game stopped reading (send deadline)",
    1006: "the connection dropped without a closing handshake",
}


def describe_close(code: int | None) -> str:
    if code is None:
        return "closed (no close code)"
    meaning = _CLOSE_MEANING.get(code)
    return f"closed with {code} ({meaning})" if meaning else f"closed with {code}"


def _short(value: Any, limit: int = 160) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _diff(expected: Any, got: Any, path: str = "") -> str | None:
    """The first place where ``got`` differs from ``expected`` (types compared strictly)."""
    where = path or "(top)"
    if isinstance(expected, bool) or isinstance(got, bool):
        if type(expected) is not type(got) or expected != got:
            return f"{where}: expected {_short(expected)}, got {_short(got)}"
        return None
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            return f"{where}: expected a map, got {_short(got)}"
        for key in expected:
            if key not in got:
                return f"{where}: key {key!r} missing"
            sub = _diff(expected[key], got[key], f"{path}.{key}" if path else str(key))
            if sub:
                return sub
        extra = [k for k in got if k not in expected]
        return f"{where}: unexpected key(s) {extra}" if extra else None
    if isinstance(expected, list):
        if not isinstance(got, list) or len(got) != len(expected):
            return f"{where}: expected {_short(expected)}, got {_short(got)}"
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            sub = _diff(e, g, f"{path}[{i}]")
            if sub:
                return sub
        return None
    if type(expected) is not type(got):
        want, kind = type(expected).__name__, type(got).__name__
        return f"{where}: expected {want} {_short(expected)}, got {kind} {_short(got)}"
    if isinstance(got, float) and (math.isnan(got) or got != expected):
        return f"{where}: expected {expected!r}, got {got!r}"
    if expected != got:
        return f"{where}: expected {_short(expected)}, got {_short(got)}"
    return None


class _Lost(Exception):
    """The game's connection went away during a check."""


@dataclass(slots=True)
class _Outcome:
    ok: bool
    got: str
    hint: str = ""


_HANDSHAKE_EXPECTED = f"websocket with subprotocol {SUBPROTOCOL}, then hello {{proto: 1}}"


class _Grader:
    """One graded session: runs the checks in order; after a lost connection the rest
    are reported as not run."""

    def __init__(self, kit: ConformanceKit, session: Session) -> None:
        self.kit = kit
        self.session = session
        self.timeout = kit.timeout_s
        self.npc: str | None = None
        self.seen: list[Incoming] = []
        self._arrived = asyncio.Event()
        self._tag = secrets.token_hex(3)
        self._lost: str | None = None

    async def run(self) -> list[CheckResult]:
        reader = asyncio.get_running_loop().create_task(self._read())
        steps: list[tuple[str, Callable[[], Awaitable[_Outcome]], str]] = [
            ("handshake", self._handshake, _HANDSHAKE_EXPECTED),
            (
                "capabilities",
                self._capabilities,
                f"hello.capabilities declares {', '.join(PROFILE_CAPABILITIES)}; at least one NPC",
            ),
            (
                "call",
                self._call_check,
                "kitEcho answers data equal to its args (every msgpack type)",
            ),
            (
                "resend",
                self._resend,
                "a resent id gets the cached result again and is not executed twice",
            ),
            (
                "cancel",
                self._cancel,
                "a cancelled kitSleep stops: no answer, the counter does not move",
            ),
            (
                "unknown",
                self._unknown,
                "kitUnimplemented is answered ok=false (UNKNOWN_CAPABILITY) promptly",
            ),
            (
                "speech",
                self._speech,
                f"kitSpeech reports text {_short(''.join(SPEECH))}, reason 'done', status 'idle'",
            ),
            (
                "events",
                self._events,
                f"events {', '.join(k for k, _ in EVENTS)} arrive intact after kitEmit",
            ),
            ("close", self._close, "after kitClose (fire) the game closes with 1000"),
        ]
        titles = dict(CHECKS)
        results: list[CheckResult] = []
        try:
            for key, step, expected in steps:
                if self._lost is not None:
                    got = f"not run: the connection {self._lost}"
                    results.append(CheckResult(key, titles[key], "not run", expected, got))
                    continue
                outcome = await self._guard(step, expecting_close=key == "close")
                status: CheckStatus = "pass" if outcome.ok else "fail"
                results.append(
                    CheckResult(key, titles[key], status, expected, outcome.got, outcome.hint)
                )
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        return results

    async def _guard(
        self, step: Callable[[], Awaitable[_Outcome]], *, expecting_close: bool
    ) -> _Outcome:
        """Run one check; a lost connection or a bridge error becomes its failure."""
        task = asyncio.ensure_future(step())
        ended = asyncio.ensure_future(self.session.wait_ended())
        try:
            if not expecting_close:
                await asyncio.wait({task, ended}, return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.wait({task})
            if task.done():
                try:
                    outcome = task.result()
                except _Lost:
                    outcome = None
                except CallTimeout:
                    outcome = _Outcome(False, f"no answer within {self.timeout} s")
                except Disconnected:
                    outcome = None
                except UnknownCapability as exc:
                    outcome = _Outcome(
                        False, f"not declared: {exc.message}", "declare every kit capability"
                    )
                except CallError as exc:
                    outcome = _Outcome(False, f"the bridge refused the call: {exc}")
                except Exception as exc:  # a shape the kit did not foresee: still a verdict
                    log.exception("conformance check failed unexpectedly")
                    outcome = _Outcome(False, f"unexpected answer ({type(exc).__name__}: {exc})")
            else:
                outcome = None
            if outcome is None or (not expecting_close and not self.session.connected):
                await asyncio.sleep(0)
                self._lost = describe_close(self.session.close_code)
                got = f"the connection {self._lost} during this check"
                return _Outcome(False, got, _close_hint(self.session.close_code))
            return outcome
        finally:
            for fut in (task, ended):
                fut.cancel()
            await asyncio.gather(task, ended, return_exceptions=True)

    async def _read(self) -> None:
        async for msg in self.session.incoming():
            self.seen.append(msg)
            self._arrived.set()

    async def _wait_for(self, match: Callable[[Incoming], bool]) -> Incoming | None:
        deadline = time.monotonic() + self.timeout
        while True:
            for msg in self.seen:
                if match(msg):
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._arrived.wait()

    async def _call(self, cap: str, args: Mapping[str, Any], call_id: str | None = None) -> Any:
        assert self.npc is not None
        return await self.session.call(self.npc, cap, args, timeout_s=self.timeout, call_id=call_id)

    def _id(self, name: str) -> str:
        return f"kit-{self._tag}-{name}"

    # -- the checks

    async def _handshake(self) -> _Outcome:
        s = self.session
        return _Outcome(True, f"session {s.id} from game {s.game!r}, hello proto 1")

    async def _capabilities(self) -> _Outcome:
        s = self.session
        if not s.npcs:
            spawn = await self._wait_for(lambda m: isinstance(m, Spawn))
            if spawn is None or not s.npcs:
                return _Outcome(False, "no NPC in hello.npcs and no spawn", "declare an NPC")
        self.npc = next(iter(s.npcs))
        npc_text = f"NPC {self.npc!r} ({s.npcs[self.npc].character})"
        declared = s.capabilities
        if declared is None:
            return _Outcome(
                False,
                f"hello without capabilities; {npc_text}",
                "list the capabilities the game implements in hello.capabilities",
            )
        missing = [c for c in PROFILE_CAPABILITIES if c not in declared]
        got = f"declared {len(declared)} capabilities; {npc_text}"
        if missing:
            return _Outcome(False, f"{got}; missing {missing}", "the harness must declare these")
        return _Outcome(True, got)

    async def _call_check(self) -> _Outcome:
        data = await self._call("kitEcho", ECHO_ARGS)
        problem = _diff(ECHO_ARGS, data)
        if problem:
            return _Outcome(False, problem, "check the msgpack codec for this type/width")
        return _Outcome(True, f"echoed {len(ECHO_ARGS)} fields intact")

    async def _count(self, call_id: str | None = None) -> int | None:
        data = await self._call("kitCount", {}, call_id)
        count = data.get("count") if isinstance(data, Mapping) else None
        return count if isinstance(count, int) and not isinstance(count, bool) else None

    async def _resend(self) -> _Outcome:
        rid = self._id("resend")
        first = await self._call("kitCount", {}, rid)
        base = first.get("count") if isinstance(first, Mapping) else None
        if not isinstance(base, int) or isinstance(base, bool):
            return _Outcome(False, f"kitCount answered {_short(first)}", 'answer {"count": n}')
        try:
            again = await self._call("kitCount", {}, rid)
        except CallTimeout:
            return _Outcome(
                False,
                f"first answer {_short(first)}; the resent id got no answer",
                "a finished id must be answered again from the result cache",
            )
        if _diff(first, again) is not None:
            return _Outcome(
                False,
                f"first answer {_short(first)}, resent id answered {_short(again)}: executed twice",
                "cache results by call id and resend the cached result (protocol.md 3.2)",
            )
        after = await self._count()
        if after != base + 1:
            return _Outcome(
                False,
                f"cached answer repeated, but the counter went {base} -> {after}: executed twice",
                "never run a call id twice, even when you resend the cached result",
            )
        return _Outcome(True, f"same answer {_short(first)} twice; next count {after}")

    async def _cancel(self) -> _Outcome:
        base = await self._count()
        if base is None:
            return _Outcome(False, "kitCount gave no count", 'answer {"count": n}')
        sid = self._id("sleep")
        ms = self.kit.sleep_ms
        started = time.monotonic()
        sleeper = asyncio.ensure_future(self._call("kitSleep", {"ms": ms}, sid))
        await asyncio.wait({sleeper}, timeout=ms / 4000)
        if sleeper.done():
            exc = sleeper.exception()
            what = f"error {exc}" if exc else f"answer {_short(sleeper.result())}"
            return _Outcome(False, f"kitSleep {{ms: {ms}}} ended early with {what}")
        await self.session.cancel(sid, "conformance kit: cancel test")
        with contextlib.suppress(CallError):
            await sleeper
        await asyncio.sleep(max(0.0, started + ms * 1.5 / 1000 - time.monotonic()))
        after = await self._count()
        if after is None:
            return _Outcome(False, "kitCount gave no count after the cancel")
        if after == base + 2:
            return _Outcome(
                False,
                f"counter {base} -> {after}: the cancelled kitSleep still completed",
                "on cancel, stop the action and do not answer (protocol.md 3.3)",
            )
        if after != base + 1:
            return _Outcome(False, f"counter {base} -> {after}, expected {base + 1}")
        return _Outcome(True, f"cancelled after {ms // 4} ms; counter {base} -> {after}")

    async def _unknown(self) -> _Outcome:
        try:
            data = await self._call("kitUnimplemented", {"x": 1})
        except GameError as exc:
            return _Outcome(True, f"error {exc.code}: {exc.message}")
        except CallTimeout:
            return _Outcome(
                False,
                f"no answer within {self.timeout} s: the call hung",
                "answer calls you have no handler for with ok=false, code UNKNOWN_CAPABILITY",
            )
        return _Outcome(False, f"ok=true with {_short(data)}", "kitUnimplemented must fail")

    async def _speech(self) -> _Outcome:
        assert self.npc is not None
        s, npc, stream = self.session, self.npc, self._id("speech")
        sent = s.status(npc, "speaking")
        for text in SPEECH:
            sent = s.say(npc, stream, text) and sent
        sent = s.say_end(npc, stream, "done") and s.status(npc, "idle") and sent
        if not sent:
            return _Outcome(False, "the speech frames could not be queued")
        data = await self._call("kitSpeech", {"stream": stream})
        want = {"text": "".join(SPEECH), "reason": "done", "status": "idle"}
        problem = _diff(want, data)
        if problem:
            return _Outcome(
                False, f"{problem} (answer {_short(data)})", "concatenate say texts per stream"
            )
        return _Outcome(True, f"{_short(data)}")

    async def _events(self) -> _Outcome:
        assert self.npc is not None
        npc = self.npc
        for kind, data in EVENTS:
            await self._call("kitEmit", {"kind": kind, "data": data})

            def match(m: Incoming, kind: str = kind) -> bool:
                return isinstance(m, Event) and m.npc == npc and m.kind == kind

            got = await self._wait_for(match)
            if got is None:
                return _Outcome(
                    False,
                    f"no valid {kind!r} event arrived within {self.timeout} s",
                    "the bridge answers invalid events with an error frame: check the game log",
                )
            assert isinstance(got, Event)
            problem = _diff(data, got.data)
            if problem:
                return _Outcome(False, f"{kind} event: {problem}")
        others = len(self.seen)
        return _Outcome(True, f"{len(EVENTS)} events intact ({others} messages from the game)")

    async def _close(self) -> _Outcome:
        assert self.npc is not None
        await self.session.call(self.npc, "kitClose", {}, mode="fire")
        try:
            async with asyncio.timeout(self.timeout):
                await self.session.wait_ended()
        except TimeoutError:
            return _Outcome(
                False, f"still connected {self.timeout} s after kitClose", "close the websocket"
            )
        code = self.session.close_code
        ok = code in (CloseCode.NORMAL, CloseCode.GOING_AWAY)
        return _Outcome(ok, describe_close(code), "" if ok else _close_hint(code))


def _close_hint(code: int | None) -> str:
    if code == CloseCode.UNSUPPORTED_DATA:
        return "send every frame as a binary frame (WRITE_MODE_BINARY, WebSocketMessageType.Binary)"
    if code == CloseCode.INVALID_DATA:
        return "each frame must be exactly one msgpack map with string keys"
    if code == 1006:
        return "close the websocket with a close frame (code 1000) instead of dropping it"
    return ""
