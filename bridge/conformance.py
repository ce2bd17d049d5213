"""The conformance kit: the runtime side of the bridge grading whatever game connects.

Why a kit and not only docs/protocol.md: engine plugin authors need something that
fails in *their* CI when their plugin breaks a rule the runtime depends on (a call
id executed twice, an unknown call left hanging, text frames). The kit listens like
``npc serve`` would, waits for the first game, drives a scripted sequence through
the public :class:`~bridge.server.BridgeServer` / :class:`~bridge.session.Session`
API and grades each step with what it expected and what came.

The game under test runs a small *harness* on top of its plugin (docs/engines.md):
at least one NPC, and these capabilities declared in ``hello.capabilities``:

- ``kitEcho`` (call): answer ``data`` = ``args`` unchanged;
- ``kitCount`` (call): add 1 to the harness's action counter, answer ``{"count": n}``;
- ``kitSleep {ms}`` (call): after ``ms`` milliseconds add 1 to the same counter and
  answer ``{"slept": ms}``; on ``cancel`` stop without counting or answering;
- ``kitEmit {kind, data}`` (call): send ``event {npc, kind, data}``, then answer;
- ``kitSpeech {stream}`` (call): answer ``{"text", "reason", "status"}``: the
  concatenated ``say`` texts of that stream, its ``say_end`` reason and the NPC's
  last ``status`` state (``null`` for what did not arrive);
- ``kitClose`` (fire): close the websocket normally (1000) and do not reconnect;
- ``kitUnimplemented``: declared but *not* handled, so the kit can check that the
  plugin answers a call it has no handler for with an error instead of hanging.

The shared counter is what makes "executed twice" and "kept running after cancel"
visible from the runtime side without any private hook.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

from ._conformance_checks import _HANDSHAKE_EXPECTED, _Grader
from ._conformance_checks import ECHO_ARGS as ECHO_ARGS  # noqa: PLC0414 (re-export)
from ._conformance_checks import EVENTS as EVENTS  # noqa: PLC0414 (re-export)
from ._conformance_checks import SPEECH as SPEECH  # noqa: PLC0414 (re-export)
from ._conformance_checks import describe_close as describe_close  # noqa: PLC0414 (re-export)
from ._conformance_report import (
    CHECKS,
    PROFILE_CAPABILITIES,
    CheckResult,
    CheckStatus,
    ConformanceReport,
)
from .config import BridgeConfig
from .messages import Hello
from .server import BridgeServer
from .session import Session

__all__ = [
    "CHECKS",
    "PROFILE_CAPABILITIES",
    "CheckResult",
    "CheckStatus",
    "ConformanceKit",
    "ConformanceReport",
    "run_conformance",
]

log = logging.getLogger("bridge.conformance")


class ConformanceKit:
    """Listen, grade the first game that connects, return a :class:`ConformanceReport`.

    ``timeout_s`` bounds every answer the kit waits for; ``sleep_ms`` is the length of
    the ``kitSleep`` call that the cancel check cancels after a quarter of it.
    The resume window is set to 0: a dropped connection ends the graded session.
    """

    def __init__(
        self, config: BridgeConfig | None = None, *, timeout_s: float = 5.0, sleep_ms: int = 1000
    ) -> None:
        if timeout_s <= 0 or sleep_ms <= 0:
            raise ValueError("timeout_s and sleep_ms must be > 0")
        self.config = dataclasses.replace(config or BridgeConfig(), resume_window_s=0.0)
        self.timeout_s = timeout_s
        self.sleep_ms = sleep_ms
        self._opened: asyncio.Queue[Session] = asyncio.Queue()
        self._graded: Session | None = None
        self._rejections: list[str] = []

    # -- SessionHandler

    def missing_capabilities(self, hello: Hello) -> list[str]:
        declared = set(hello.capabilities or ()) if hello.capabilities is not None else None
        if declared is None:
            return []
        return [c for c in PROFILE_CAPABILITIES if c not in declared]

    async def session_opened(self, session: Session) -> None:
        self._opened.put_nowait(session)

    async def session_closed(self, session: Session) -> None:
        return None

    # -- running

    async def run(
        self,
        *,
        wait_s: float | None = 120.0,
        on_listening: Callable[[str], None] | None = None,
        on_connected: Callable[[Session], None] | None = None,
    ) -> ConformanceReport:
        """Serve until a game connects (at most ``wait_s``), grade it, stop serving."""
        with _HandshakeLog() as handshakes:
            async with BridgeServer(self.config, self) as server:
                url = server.url
                if on_listening is not None:
                    on_listening(url)
                try:
                    async with asyncio.timeout(wait_s):
                        session = await self._opened.get()
                except TimeoutError:
                    return self._no_game(url, wait_s, handshakes.statuses)
                if on_connected is not None:
                    on_connected(session)
                checks = await _Grader(self, session).run()
                return ConformanceReport(url, session.game, session.id, tuple(checks))

    def _no_game(self, url: str, wait_s: float | None, statuses: list[int]) -> ConformanceReport:
        refused = [s for s in statuses if s != 101]
        if refused:
            got = f"no session; handshakes refused with HTTP {', '.join(map(str, refused))}"
            hint = "400: offer the subprotocol npc-bridge.v1; 401: wrong bearer token; 403: origin"
        elif statuses:
            got = "a websocket opened but no valid hello followed"
            hint = "send hello {t, proto: 1, game} as a binary msgpack frame first, within 10 s"
        else:
            got = f"no game connected within {wait_s} s"
            hint = f"point the game at {url}"
        first = CheckResult("handshake", CHECKS[0][1], "fail", _HANDSHAKE_EXPECTED, got, hint)
        rest = [CheckResult(k, t, "not run", "", "not run: no game") for k, t in CHECKS[1:]]
        return ConformanceReport(url, None, None, (first, *rest))


class _HandshakeLog(logging.Handler):
    """Collects the HTTP status of handshake answers (websockets logs them at DEBUG).

    Only for the diagnosis when no session opens: a refused handshake never
    reaches the bridge's public API.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statuses: list[int] = []
        self._logger = logging.getLogger("websockets.server")
        self._level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if record.msg == "> HTTP/1.1 %d %s" and isinstance(args, tuple) and args:
            status = args[0]
            if isinstance(status, int):
                self.statuses.append(status)

    def __enter__(self) -> _HandshakeLog:
        self._logger.addHandler(self)
        if self._logger.getEffectiveLevel() > logging.DEBUG:
            self._logger.setLevel(logging.DEBUG)
            self._logger.addFilter(_only_handshake_debug)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.removeFilter(_only_handshake_debug)
        self._logger.setLevel(self._level)


def _only_handshake_debug(record: logging.LogRecord) -> bool:
    """Keep websockets' other DEBUG chatter out of the user's logs while we listen."""
    return record.levelno > logging.DEBUG or record.msg == "> HTTP/1.1 %d %s"


async def run_conformance(
    config: BridgeConfig | None = None,
    *,
    timeout_s: float = 5.0,
    wait_s: float | None = 120.0,
    sleep_ms: int = 1000,
    on_listening: Callable[[str], None] | None = None,
    on_connected: Callable[[Session], None] | None = None,
) -> ConformanceReport:
    """Convenience wrapper: ``await run_conformance(BridgeConfig(port=0), on_listening=print)``."""
    kit = ConformanceKit(config, timeout_s=timeout_s, sleep_ms=sleep_ms)
    return await kit.run(wait_s=wait_s, on_listening=on_listening, on_connected=on_connected)
