"""One NPC's mind: its history, what it perceives, and the turn loop.

A turn: a triggering perception becomes a user message; the model is streamed (text deltas
go to the game at once as ``say``); each tool call is validated with the registry and
executed (in the game through a ``GameLink``, or in Python); results go back as ``role: tool``
messages; repeat until the model answers without tool calls or the step limit is hit.

Semantics worth knowing:

- Several tool calls in one answer run concurrently; their results are appended in the
  order the model gave the calls, whatever order they finish in.
- A triggering perception arriving while the NPC is speaking or acting interrupts the turn:
  the model stream is cancelled, ``say_end{interrupted}`` and ``cancel`` for in-flight game
  calls are sent, the unfinished calls are answered in the history as CANCELLED, and a new
  turn starts that sees everything that arrived. While it is still thinking, the perception
  waits for the next turn. A turn that answers an interruption is not interrupted itself (it
  queues), so two NPCs talking to each other cannot starve each other. Triggers waiting for
  a turn are coalesced into one user message; those older than their ``ttl_ms`` are
  dropped; at most ``limits.event_queue`` wait (the oldest go first).
- Executing the calls is ``runtime.tool_calls``'s job.
- A failing model (after the client's retries) fails the turn, never the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from capabilities import Registry
from runtime.completions import Completion, CompletionsError, StreamEvent, TextDelta, ToolCall
from runtime.history import History
from runtime.metrics import Metrics
from runtime.project import Character, LimitSettings
from runtime.prompts import PromptBuilder, render_event
from runtime.store import MessageRecord, Store, TurnRecord
from runtime.tool_calls import GameLink, NoGame, NpcState, run_tool_calls, tool_error_message

__all__ = [
    "GameLink",
    "ModelClient",
    "ModelStream",
    "NpcSession",
    "NpcState",
    "Perception",
    "TurnResult",
]

logger = logging.getLogger("runtime.session")

Outcome = Literal["done", "step_limit", "interrupted", "failed", "cancelled"]


class ModelStream(Protocol):
    def __aiter__(self) -> AsyncIterator[StreamEvent]: ...

    @property
    def completion(self) -> Completion: ...


class ModelClient(Protocol):
    def stream(self, body: Mapping[str, Any]) -> AbstractAsyncContextManager[ModelStream]: ...


@dataclass(frozen=True, slots=True)
class Perception:
    kind: str
    data: Mapping[str, Any]
    ttl_ms: int | None = None
    at: float = field(default_factory=time.monotonic)

    def expired(self, now: float) -> bool:
        return self.ttl_ms is not None and (now - self.at) * 1000 > self.ttl_ms


@dataclass(slots=True)
class TurnResult:
    npc: str
    turn: int
    outcome: Outcome = "done"
    steps: int = 0
    tool_calls: int = 0
    text: str = ""
    """Everything the NPC said this turn (text of all steps)."""
    error: str | None = None
    model_ms: float = 0.0
    first_speech_ms: float | None = None
    tool_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started_at: float = 0.0
    ended_at: float = 0.0
    exception: Exception | None = None
    """What failed the turn, when it failed on an exception (e.g. the model's error)."""
    deferred: tuple[ToolCall, ...] = ()
    """Calls of deferred tools, handed back to the caller instead of executed."""


_stream_ids = itertools.count(1)


class NpcSession:
    """One NPC. ``perceive`` feeds it; ``run`` is its loop; ``run_turn`` runs one turn directly."""

    def __init__(
        self,
        npc: str,
        character: Character,
        registry: Registry,
        model: ModelClient,
        store: Store,
        limits: LimitSettings,
        *,
        link: GameLink | None = None,
        prompt: PromptBuilder | None = None,
        request: Mapping[str, Any] | None = None,
        declared: frozenset[str] | None = None,
        state: Mapping[str, Any] | None = None,
        on_record: Callable[[dict[str, Any]], None] | None = None,
        history: Sequence[dict[str, Any]] = (),
        turn: int = 0,
        extra_tools: Sequence[Mapping[str, Any]] = (),
        defer: frozenset[str] = frozenset(),
        metrics: Metrics | None = None,
        is_npc: Callable[[str], bool] = lambda _speaker: False,
    ) -> None:
        """``extra_tools`` are offered to the model next to the character's capabilities;
        calls of tools named in ``defer`` (and of every extra tool) end the turn and are
        returned in ``TurnResult.deferred`` for the caller to run: the stateless mode of the
        character endpoint, where the client executes game actions itself."""
        self.npc = npc
        self.character = character
        self.model = model
        self.store = store
        self.limits = limits
        self.link: GameLink = link or NoGame()
        self.prompt = prompt or PromptBuilder(character)
        self.state: dict[str, Any] = dict(state or {})
        self.on_record = on_record
        self.metrics = metrics
        self.is_npc = is_npc
        self.npc_replies = 0
        """Turns in a row started only by other NPCs' speech."""
        self.history = History(limits.history_messages, limits.history_tokens, history)
        self.turn_number = turn
        # A runtime killed mid-call leaves a tool call without its result in the store, and
        # providers reject such a history: every later turn of this NPC would fail. Answer it.
        for call_id in _unanswered_calls(self.history):
            self._add(
                tool_error_message(
                    call_id,
                    "DISCONNECTED",
                    "the runtime stopped before this call finished (outcome unknown: look again)",
                )
            )
        self.perceptions: deque[str] = deque(maxlen=max(limits.perceptions_in_prompt, 1))
        self.missing: list[str] = []
        usable = []
        for name in character.capabilities:
            cap = registry.get(name)
            if cap.executor == "game" and declared is not None and name not in declared:
                self.missing.append(name)
                continue
            usable.append(name)
        self.registry = registry.subset(usable)
        self._body: dict[str, Any] = {**(request or {}), "stream": True}
        tools = [*self.registry.openai_tools(), *extra_tools]
        if tools:
            self._body["tools"] = tools
        self._defer = defer | {str(tool.get("function", {}).get("name")) for tool in extra_tools}
        self._pending: deque[Perception] = deque()
        self._wakeup = asyncio.Event()
        self._turn_task: asyncio.Task[TurnResult] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._closed = False
        self._interrupting = False
        self._interruptible = True
        self.dropped_events = 0
        self.activity: NpcState = "idle"
        self.last_result: TurnResult | None = None

    # -- feeding --------------------------------------------------------------------------

    def perceive(self, perception: Perception) -> None:
        """Never blocks. Triggers wake the loop (and interrupt a running turn)."""
        if self._closed:
            return
        if perception.kind == "state":
            self.state.update(perception.data)
        if perception.kind not in self.character.triggers:
            if perception.kind != "state":
                self.perceptions.append(render_event(perception.kind, perception.data))
            return
        if self._npc_chatter_exhausted(perception):
            self.perceptions.append(render_event(perception.kind, perception.data))
            if self.activity == "idle":
                # A trigger kind that starts no turn: say so, so a game (or the simulator's
                # lockstep clock) waiting for a reaction knows none is coming.
                self.link.status(self.npc, "idle")
            return
        self._pending.append(perception)
        while len(self._pending) > self.limits.event_queue:
            self._pending.popleft()
            self.dropped_events += 1
        self._wakeup.set()
        task = self._turn_task
        if (
            task is not None
            and not task.done()
            and not self._interrupting
            and self._interruptible
            and self.activity in ("speaking", "acting")
        ):
            # A library may swallow the cancel message, so the reason travels in a flag.
            self._interrupting = True
            task.cancel()

    def _from_npc(self, perception: Perception) -> bool:
        speaker = perception.data.get("speaker") if perception.kind == "heard" else None
        return isinstance(speaker, str) and self.is_npc(speaker)

    def _npc_chatter_exhausted(self, perception: Perception) -> bool:
        """Two NPCs within earshot would answer each other forever: after
        ``limits.npc_replies`` turns in a row started only by other NPCs' speech, NPC speech
        is kept as context and no longer starts turns, until someone else speaks."""
        return self.npc_replies >= self.limits.npc_replies and self._from_npc(perception)

    # -- the loop -------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self.run(), name=f"npc:{self.npc}")
        return self._loop_task

    async def run(self) -> None:
        while not self._closed:
            await self._wakeup.wait()
            self._wakeup.clear()
            now = time.monotonic()
            triggers = [p for p in self._pending if not p.expired(now)]
            expired = len(self._pending) - len(triggers)
            self._pending.clear()
            if self.dropped_events or expired:
                logger.warning(
                    "npc=%s: %d queued events dropped (queue full), %d expired (ttl_ms)",
                    self.npc,
                    self.dropped_events,
                    expired,
                )
                self.dropped_events = 0
            if not triggers:
                continue
            if all(self._from_npc(p) for p in triggers):
                self.npc_replies += 1
            else:
                self.npc_replies = 0
            # A turn that answers an interruption runs to its end: two NPCs talking to each
            # other would otherwise interrupt each other forever and never finish a turn.
            last = self.last_result
            self._interruptible = last is None or last.outcome != "interrupted"
            lines = [render_event(p.kind, p.data) for p in triggers]
            self._turn_task = asyncio.create_task(self.run_turn("\n".join(lines)))
            try:
                self.last_result = await asyncio.shield(self._turn_task)
            except asyncio.CancelledError:
                # Our own loop is being cancelled (close/despawn): stop the turn too.
                self._turn_task.cancel()
                with contextlib.suppress(BaseException):
                    await self._turn_task
                raise
            except Exception:
                logger.exception("npc=%s turn crashed", self.npc)
            finally:
                self._turn_task = None

    async def close(self) -> None:
        """Despawn: cancel everything for this NPC."""
        self._closed = True
        task = self._loop_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        turn = self._turn_task
        if turn is not None and not turn.done():
            turn.cancel()
            with contextlib.suppress(BaseException):
                await turn

    # -- one turn -------------------------------------------------------------------------

    async def run_turn(self, user_text: str | None) -> TurnResult:
        """Run a whole turn for one user message (None: answer the history as it is).
        Cancellation = interruption."""
        self.turn_number += 1
        result = TurnResult(self.npc, self.turn_number, started_at=time.time())
        started = time.perf_counter()
        if user_text is not None:
            self._add({"role": "user", "content": user_text})
        failures: Counter[str] = Counter()
        speech: list[str] = []
        open_calls: list[str] = []
        stream_id: str | None = None
        try:
            while True:
                if result.steps >= self.limits.steps_per_turn:
                    result.outcome = "step_limit"
                    result.error = f"step limit ({self.limits.steps_per_turn}) reached"
                    break
                result.steps += 1
                self._status("thinking")
                stream_id = f"{self.npc}-{next(_stream_ids)}"
                completion, spoke = await self._model_step(stream_id, result, started, speech)
                if spoke:
                    self.link.say_end(self.npc, stream_id, "done")
                stream_id = None
                if spoke:
                    speech.append("\x00")  # step boundary, for TurnResult.text
                choice = completion.choice
                message = choice.to_message()
                calls = choice.tool_calls
                self._add(message, meta=self._usage_meta(completion))
                if not calls:
                    break
                if self._defer and any(call.name in self._defer for call in calls):
                    result.deferred = tuple(c for c in calls if c.name in self._defer)
                    own = [c for c in calls if c.name not in self._defer]
                    if own:  # runtime capabilities asked for in the same answer still run
                        # and are answered in the history, so the caller only adds its own.
                        for call_id, content in await self._run_tools(own, failures):
                            self._add({"role": "tool", "tool_call_id": call_id, "content": content})
                    result.tool_calls += len(calls)
                    break
                open_calls = [call.id for call in calls]
                self._status("acting")
                tool_started = time.perf_counter()
                outcomes = await self._run_tools(calls, failures)
                result.tool_ms += (time.perf_counter() - tool_started) * 1000
                result.tool_calls += len(calls)
                for call_id, content in outcomes:
                    self._add({"role": "tool", "tool_call_id": call_id, "content": content})
                    open_calls.remove(call_id)
                exhausted = [name for name, n in failures.items() if n > self.limits.tool_retries]
                if exhausted:
                    result.outcome = "failed"
                    result.error = (
                        f"invalid tool calls: retry budget exhausted for {', '.join(exhausted)}"
                    )
                    break
        except asyncio.CancelledError:
            interrupted, self._interrupting = self._interrupting, False
            result.outcome = "interrupted" if interrupted else "cancelled"
            result.error = f"turn {result.outcome}"
            if stream_id is not None and speech:
                self.link.say_end(self.npc, stream_id, "interrupted")
            for call_id in open_calls:
                self._add(
                    tool_error_message(call_id, "CANCELLED", f"not finished: turn {result.outcome}")
                )
            if not interrupted:
                self._finish(result, started)
                raise
        except CompletionsError as exc:
            result.outcome = "failed"
            result.error = f"model error: {exc}"
            result.exception = exc
            if stream_id is not None and speech:
                self.link.say_end(self.npc, stream_id, "error")
        except Exception as exc:
            # A bug or an unexpected failure below us fails this turn, never the NPC.
            logger.exception("npc=%s turn %d failed unexpectedly", self.npc, result.turn)
            result.outcome = "failed"
            result.error = f"internal error: {type(exc).__name__}: {exc}"
            result.exception = exc
            if stream_id is not None and speech:
                self.link.say_end(self.npc, stream_id, "error")
        result.text = " ".join(part for part in "".join(speech).split("\x00") if part)
        self._finish(result, started)
        return result

    async def _model_step(
        self, stream_id: str, result: TurnResult, started: float, speech: list[str]
    ) -> tuple[Completion, bool]:
        body = dict(self._body)
        system = self.prompt.render(self.npc, self.state, self.perceptions)
        body["messages"] = [{"role": "system", "content": system}, *self.history]
        step_started = time.perf_counter()
        spoke = False
        link, npc = self.link, self.npc
        try:
            async with self.model.stream(body) as stream:
                async for event in stream:
                    if type(event) is TextDelta and event.choice == 0 and event.text:
                        if not spoke:
                            spoke = True
                            self._status("speaking")
                            if result.first_speech_ms is None:
                                result.first_speech_ms = (time.perf_counter() - started) * 1000
                        speech.append(event.text)
                        link.say(npc, stream_id, event.text)
                completion = stream.completion
        finally:
            result.model_ms += (time.perf_counter() - step_started) * 1000
        if completion.usage is not None:
            result.prompt_tokens += completion.usage.prompt_tokens
            result.completion_tokens += completion.usage.completion_tokens
        return completion, spoke

    async def _run_tools(
        self, calls: Sequence[ToolCall], failures: Counter[str]
    ) -> list[tuple[str, str]]:
        return await run_tool_calls(self, calls, failures)

    # -- bookkeeping ----------------------------------------------------------------------

    def _status(self, state: NpcState) -> None:
        self.activity = state
        self.link.status(self.npc, state)

    def _add(self, message: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        self.history.append(message)
        self.store.append_message(
            MessageRecord(self.npc, self.character.id, self.turn_number, message, meta=meta)
        )
        if self.on_record is not None:
            self.on_record(
                {"type": "message", "npc": self.npc, "turn": self.turn_number, **message}
                | ({"meta": meta} if meta else {})
            )

    @staticmethod
    def _usage_meta(completion: Completion) -> dict[str, Any] | None:
        usage = completion.usage
        if usage is None:
            return None
        return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}

    def _finish(self, result: TurnResult, started: float) -> None:
        result.ended_at = time.time()
        self._status("idle")
        record = TurnRecord(
            npc=self.npc,
            character=self.character.id,
            turn=result.turn,
            started_at=result.started_at,
            ended_at=result.ended_at,
            steps=result.steps,
            tool_calls=result.tool_calls,
            outcome=result.outcome,
            model_ms=round(result.model_ms, 3),
            first_speech_ms=None
            if result.first_speech_ms is None
            else round(result.first_speech_ms, 3),
            tool_ms=round(result.tool_ms, 3),
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            error=result.error,
        )
        self.store.append_turn(record)
        if self.metrics is not None:
            self.metrics.observe_turn(
                record.outcome,
                tool_calls=record.tool_calls,
                prompt_tokens=record.prompt_tokens,
                completion_tokens=record.completion_tokens,
                model_ms=record.model_ms,
                first_speech_ms=record.first_speech_ms,
                tool_ms=record.tool_ms,
            )
        elapsed = (time.perf_counter() - started) * 1000
        logger.info(
            "npc=%s turn=%d outcome=%s steps=%d tools=%d latency=%.0fms model=%.0fms "
            "first_speech=%s tokens=%d/%d%s",
            self.npc,
            result.turn,
            result.outcome,
            result.steps,
            result.tool_calls,
            elapsed,
            result.model_ms,
            "-" if result.first_speech_ms is None else f"{result.first_speech_ms:.0f}ms",
            result.prompt_tokens,
            result.completion_tokens,
            f" error={result.error}" if result.error else "",
        )
        if self.on_record is not None:
            fields = {k: getattr(record, k) for k in record.__slots__}
            ok = record.outcome not in ("failed", "step_limit")
            self.on_record({"type": "turn", "ok": ok, **fields})


def _unanswered_calls(history: History) -> list[str]:
    """Ids of the tool calls of the last assistant message that have no result yet."""
    answered: set[str] = set()
    for message in reversed(list(history)):
        if message.get("role") == "tool":
            answered.add(str(message.get("tool_call_id")))
            continue
        calls = message.get("tool_calls") or ()
        return [str(c.get("id")) for c in calls if str(c.get("id")) not in answered]
    return []
