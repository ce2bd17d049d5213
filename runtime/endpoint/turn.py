"""One request = one transient NPC turn, driven by the runtime's own turn loop.

The endpoint is stateless and client-driven: the client's messages become the history of a
throwaway ``NpcSession`` (in-memory store), the session answers that history, and the session's
game link is this module's ``_HttpLink``, which turns speech into text for the response instead
of ``say`` frames for a game. The character's runtime-executed capabilities run inside the
request, exactly as in a game; its game-executed capabilities and the client's tools are
*deferred*: the turn ends at their call and the calls go back to the client as ``tool_calls``.

Text is handed over through a list and an event, so a burst of deltas that arrived while the
response was writing is taken in one go (one ``send``), not one wake-up per delta.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from runtime.completions import CompletionsError, ToolCall
from runtime.endpoint.errors import EndpointError, upstream_error
from runtime.endpoint.render import Usage
from runtime.endpoint.schema import ChatRequest
from runtime.project import Character, Project
from runtime.prompts import PromptBuilder
from runtime.runtime import Runtime
from runtime.session import ModelClient, ModelStream, NpcSession, NpcState, TurnResult
from runtime.store import MemoryStore

__all__ = ["HttpTurn", "TurnEnd", "TurnFactory"]

logger = logging.getLogger("runtime.endpoint")

_STOP_REASONS = frozenset({"length", "content_filter"})


@dataclass(frozen=True, slots=True)
class TurnEnd:
    """How a turn ended, in response terms."""

    finish_reason: str
    deferred: tuple[ToolCall, ...]
    usage: Usage
    error: EndpointError | None = None


class _GameActionsAreTheClients(Exception):
    """A runtime capability tried ``ctx.game.call``: there is no game behind this endpoint."""

    code = "UNAVAILABLE"

    def __init__(self, cap: str) -> None:
        self.message = (
            f"{cap} is a game action; over the HTTP endpoint game actions are returned to the "
            "client as tool_calls and cannot be called from inside another capability"
        )
        super().__init__(self.message)


class _HttpLink:
    """The session's game link: speech goes into the response, nothing else goes anywhere."""

    def __init__(self, turn: HttpTurn) -> None:
        self._turn = turn
        self._stream: str | None = None

    async def call(
        self,
        npc: str,
        cap: str,
        args: Mapping[str, Any] | None = None,
        *,
        mode: Literal["call", "fire"] = "call",
        timeout_s: float | None = None,
        idempotent: bool = False,
    ) -> Any:
        raise _GameActionsAreTheClients(cap)

    def say(self, npc: str, stream: str, text: str) -> bool:
        if stream != self._stream:
            # A new model step: separate it from the text of the previous one, as
            # TurnResult.text does.
            if self._stream is not None and self._turn.said:
                text = " " + text
            self._stream = stream
        self._turn.push(text)
        return True

    def say_end(self, npc: str, stream: str, reason: str = "done") -> bool:
        return True

    def status(self, npc: str, state: NpcState) -> bool:
        return True


class _WatchedModel:
    """The runtime's model client, noting what the turn loop does not keep: the exception of a
    failed step (429 or 502?) and the finish_reason of the last answer (``length``?)."""

    def __init__(self, inner: ModelClient) -> None:
        self._inner = inner
        self.error: CompletionsError | None = None
        self.finish_reason: str | None = None

    @contextlib.asynccontextmanager
    async def stream(self, body: Mapping[str, Any]) -> AsyncIterator[ModelStream]:
        try:
            async with self._inner.stream(body) as stream:
                yield stream
                with contextlib.suppress(LookupError, CompletionsError):
                    self.finish_reason = stream.completion.choice.finish_reason
        except CompletionsError as exc:
            self.error = exc
            raise


class HttpTurn:
    """A turn running in its own task; :meth:`next` hands out text as it is generated."""

    def __init__(self, session: NpcSession, model: _WatchedModel) -> None:
        self.session = session
        self._model = model
        self._pending: list[str] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[TurnResult] | None = None
        self.said = False
        self.text: list[str] = []
        session.link = _HttpLink(self)

    def push(self, text: str) -> None:
        self.said = True
        self.text.append(text)
        self._pending.append(text)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self.session.run_turn(None), name=self.session.npc)
        self._task.add_done_callback(lambda _: self._wake.set())

    async def next(self) -> tuple[list[str], TurnEnd | None]:
        """Wait until there is text or the turn is over: (new text pieces, end or None)."""
        assert self._task is not None, "start() first"
        while not self._pending and not self._task.done():
            await self._wake.wait()
            self._wake.clear()
        pieces, self._pending = self._pending, []
        if pieces or not self._task.done():
            return pieces, None
        return [], self._end(self._task)

    async def result(self) -> TurnEnd:
        """Wait for the end (non-streaming)."""
        while True:
            _, end = await self.next()
            if end is not None:
                return end

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def aclose(self) -> None:
        self.cancel()
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await self._task

    def _end(self, task: asyncio.Task[TurnResult]) -> TurnEnd:
        if task.cancelled():
            return TurnEnd("stop", (), Usage(0, 0), EndpointError("The turn was cancelled."))
        exc = task.exception()
        if exc is not None:
            logger.error("turn %s crashed", self.session.npc, exc_info=exc)
            return TurnEnd(
                "stop", (), Usage(0, 0), EndpointError("Internal error.", code="internal_error")
            )
        result = task.result()
        usage = Usage(result.prompt_tokens, result.completion_tokens)
        if result.outcome == "done":
            if result.deferred:
                return TurnEnd("tool_calls", result.deferred, usage)
            reason = self._model.finish_reason
            return TurnEnd(reason if reason in _STOP_REASONS else "stop", (), usage)
        if result.outcome == "step_limit":
            return TurnEnd("length", (), usage)
        return TurnEnd("stop", (), usage, upstream_error(self._model.error, result.error))


class TurnFactory:
    """What every request of one app shares: the project, the runtime's model clients, and
    per character the prompt builder and the names of the deferred (game) capabilities."""

    def __init__(self, project: Project, runtime: Runtime) -> None:
        self.project = project
        self.runtime = runtime
        self._prompts: dict[str, PromptBuilder] = {}
        self._deferred: dict[str, frozenset[str]] = {}

    def begin(self, request: ChatRequest, character: Character, request_id: str) -> HttpTurn:
        spec = self.runtime.model_spec(character)
        prompt = self._prompts.get(character.id)
        if prompt is None:
            prompt = self._prompts[character.id] = PromptBuilder.for_project(
                self.project, character
            )
        deferred = self._deferred.get(character.id)
        if deferred is None:
            registry = self.project.registry
            deferred = self._deferred[character.id] = frozenset(
                name for name in character.capabilities if registry.get(name).executor == "game"
            )
        # The character's definition wins over a client tool of the same name.
        own = set(character.capabilities)
        tools = [tool.wire() for tool in request.tools if tool.function.name not in own]
        model = _WatchedModel(self.runtime.client_for(spec.base_url))
        session = NpcSession(
            f"http-{request_id}",
            character,
            self.project.registry,
            model,
            MemoryStore(),
            self.project.config.limits,
            prompt=prompt,
            request={**spec.request, **request.sampling},
            history=request.history(),
            extra_tools=tools,
            defer=deferred,
        )
        turn = HttpTurn(session, model)
        turn.start()
        return turn
