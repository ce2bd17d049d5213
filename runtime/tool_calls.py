"""Executing the model's tool calls for one NPC.

Each call is checked with the registry first (an invalid call becomes an error message for the
model, counted against the capability's retry budget); valid calls run in the game through the
NPC's ``GameLink`` or as Python functions with a ``CapabilityContext``. Calls of one answer run
concurrently and come back in the model's order. Every failure becomes tool-message content
``{"error": {"code", "message"}}`` the model can react to; nothing raises out of here but
cancellation.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

from capabilities import ArgumentsInvalid, ArgumentsOk, Capability, CapabilityContext, Registry
from runtime.completions import ToolCall
from runtime.project import Character
from runtime.store import Store

__all__ = [
    "GameLink",
    "NoGame",
    "NpcState",
    "ToolFailure",
    "ToolHost",
    "error_content",
    "result_content",
    "run_tool_calls",
    "tool_error_message",
]

logger = logging.getLogger("runtime.session")

NpcState = Literal["idle", "thinking", "acting", "speaking"]
_background: set[asyncio.Task[Any]] = set()


class GameLink(Protocol):
    """The game side of one NPC (a bridge session satisfies it)."""

    async def call(
        self,
        npc: str,
        cap: str,
        args: Mapping[str, Any] | None = None,
        *,
        mode: Literal["call", "fire"] = "call",
        timeout_s: float | None = None,
        idempotent: bool = False,
    ) -> Any: ...

    def say(self, npc: str, stream: str, text: str) -> bool: ...

    def say_end(self, npc: str, stream: str, reason: str = "done") -> bool: ...

    def status(self, npc: str, state: NpcState) -> bool: ...


class ToolHost(Protocol):
    """What executing a call needs from the NPC's session."""

    npc: str
    character: Character
    registry: Registry
    link: GameLink
    store: Store
    state: dict[str, Any]


class NoGame:
    """Link used when no game is connected (HTTP endpoint, benchmarks, tests)."""

    async def call(
        self, npc: str, cap: str, args: Mapping[str, Any] | None = None, **_: Any
    ) -> Any:
        raise ToolFailure("DISCONNECTED", "no game is connected to perform this action")

    def say(self, npc: str, stream: str, text: str) -> bool:
        return False

    def say_end(self, npc: str, stream: str, reason: str = "done") -> bool:
        return False

    def status(self, npc: str, state: NpcState) -> bool:
        return False


class ToolFailure(Exception):
    """A tool call failed with a code the model can read (``TIMEOUT``, ``DISCONNECTED``, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Memory:
    def __init__(self, store: Store, npc: str) -> None:
        self._store, self._npc = store, npc

    async def remember(self, fact: str) -> None:
        await self._store.remember(self._npc, fact)

    async def recall(self, query: str, limit: int = 5) -> list[str]:
        return await self._store.recall(self._npc, query, limit)


class _GameHandle:
    """``ctx.game``: lets a runtime capability call a game capability of the same NPC."""

    def __init__(self, host: ToolHost) -> None:
        self._host = host

    async def call(
        self,
        capability: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Any:
        host = self._host
        cap = host.registry.get(capability)
        return await host.link.call(
            host.npc,
            cap.name,
            dict(args or {}),
            mode=cap.mode,
            timeout_s=timeout_s or cap.timeout_s,
            idempotent=cap.idempotent,
        )


async def run_tool_calls(
    host: ToolHost, calls: Sequence[ToolCall], failures: Counter[str]
) -> list[tuple[str, str]]:
    """Validate and run one answer's tool calls; ``(call id, tool message content)`` in the
    model's order. Invalid calls are counted in ``failures`` by capability."""
    checked: list[tuple[str, ArgumentsOk | ArgumentsInvalid]] = []
    for call in calls:
        verdict = host.registry.validate(call.name, call.arguments)
        if isinstance(verdict, ArgumentsInvalid):
            failures[call.name if call.name in host.registry else "<unknown tool>"] += 1
        checked.append((call.id, verdict))
    if len(checked) == 1:
        call_id, verdict = checked[0]
        return [(call_id, await _execute(host, verdict))]
    contents = await asyncio.gather(*(_execute(host, v) for _, v in checked))
    return [(cid, content) for (cid, _), content in zip(checked, contents, strict=True)]


async def _execute(host: ToolHost, verdict: ArgumentsOk | ArgumentsInvalid) -> str:
    if isinstance(verdict, ArgumentsInvalid):
        return error_content("INVALID_ARGUMENTS", verdict.message)
    cap = host.registry.get(verdict.name)
    try:
        if cap.executor == "runtime":
            data = await _run_python(host, cap, verdict)
        else:
            data = await host.link.call(
                host.npc,
                cap.name,
                verdict.args,
                mode=cap.mode,
                timeout_s=cap.timeout_s,
                idempotent=cap.idempotent,
            )
    except asyncio.CancelledError:
        raise
    except ToolFailure as exc:
        return error_content(exc.code, exc.message)
    except Exception as exc:
        code = str(getattr(exc, "code", "") or type(exc).__name__)
        message = str(getattr(exc, "message", "") or exc) or type(exc).__name__
        if code == "DISCONNECTED" and "outcome unknown" not in message:
            message = f"{message} (outcome unknown: look again)"
        return error_content(code, message)
    if cap.mode == "fire":
        return '{"status":"dispatched"}'
    return result_content(data)


async def _run_python(host: ToolHost, cap: Capability, verdict: ArgumentsOk) -> Any:
    function = cap.function
    if function is None:  # a registry built by hand without a function
        raise ToolFailure("INTERNAL", f"{cap.name} has no implementation")
    args: list[Any] = []
    if cap.takes_context:
        args.append(
            CapabilityContext(
                npc=host.npc,
                character=host.character.id,
                knowledge=host.character.knowledge,
                game=_GameHandle(host),
                memory=_Memory(host.store, host.npc),
                world=host.state,
            )
        )

    async def invoke() -> Any:
        value = function(*args, **verdict.values)
        if inspect.isawaitable(value):
            value = await value
        return value

    if cap.mode == "fire":
        task = asyncio.create_task(invoke())
        _background.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(_background.discard)
        task.add_done_callback(_log_task_failure)
        return None
    try:
        async with asyncio.timeout(cap.timeout_s):
            return await invoke()
    except TimeoutError:
        raise ToolFailure("TIMEOUT", f"{cap.name} did not finish in {cap.timeout_s:g} s") from None


def result_content(data: Any) -> str:
    if isinstance(data, str):
        return data
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return json.dumps({"result": repr(data)})


def error_content(code: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False)


def tool_error_message(call_id: str, code: str, message: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": error_content(code, message)}


def _log_task_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("fire-and-forget capability failed", exc_info=task.exception())
