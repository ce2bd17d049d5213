"""The Runtime: every NPC session of a project, the model clients, the store, and the
bridge hook-up.

It is what ``npc serve`` and ``npc sim`` run. A game connects over the bridge; each NPC it
spawns gets an ``NpcSession`` (history resumed from the store); each ``event`` is a
perception for that NPC. NPCs can also be spawned directly (``spawn``) when no game is
connected, e.g. by the HTTP endpoint or a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2

from bridge.messages import Despawn, Event, Hello, Spawn
from bridge.session import Session
from runtime.completions import CompletionsClient, RetryPolicy, Timeouts
from runtime.metrics import Metrics
from runtime.offline.client import endpoint_base_url, make_http_client
from runtime.offline.convert import offline_characters
from runtime.offline.misbehaviour import Misbehaviour
from runtime.project import Character, Project
from runtime.prompts import PromptBuilder
from runtime.session import GameLink, ModelClient, NpcSession, Perception
from runtime.store import MemoryStore, Store

__all__ = ["ModelSpec", "Runtime"]

logger = logging.getLogger("runtime")

_REQUEST_FIELDS = ("temperature", "top_p", "max_tokens", "stop", "frequency_penalty")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Where one character's turns go: resolved from npc.toml [model] and the character."""

    base_url: str
    model: str
    request: Mapping[str, Any]


class Runtime:
    """``async with Runtime(project) as rt:`` ... sessions are closed on exit."""

    def __init__(
        self,
        project: Project,
        *,
        store: Store | None = None,
        model_client: Callable[[str], ModelClient] | None = None,
        base_url: str | None = None,
        record: str | None = None,
        seed: int | None = None,
        misbehave: str | None = None,
        on_record: Callable[[dict[str, Any]], None] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``model_client`` (a factory from base_url to client) replaces the built-in
        clients, e.g. in tests; ``base_url`` overrides npc.toml (``--model``)."""
        self.project = project
        self.store: Store = store or MemoryStore()
        self.on_record = on_record
        self.sessions: dict[str, NpcSession] = {}
        self.metrics = Metrics()
        self._owners: dict[str, Session | None] = {}
        self._env = os.environ if environ is None else environ
        settings = project.config.model
        # As in the openai SDK: an explicit setting wins, else OPENAI_BASE_URL, else the default.
        configured = settings.base_url if "base_url" in settings.model_fields_set else None
        self._base_url = (
            base_url or configured or self._env.get("OPENAI_BASE_URL") or settings.base_url
        )
        self._record = record if record is not None else settings.record
        self._seed = settings.seed if seed is None else seed
        self._misbehave = misbehave if misbehave is not None else settings.misbehave
        self._factory = model_client
        self._clients: dict[str, ModelClient] = {}
        self._owned: list[CompletionsClient] = []
        self._owned_http: list[httpx2.AsyncClient] = []
        self._prompts: dict[str, PromptBuilder] = {}
        self._bridge_tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- models -----------------------------------------------------------------------------

    def model_spec(self, character: Character) -> ModelSpec:
        settings = self.project.config.model
        base_url = character.model.base_url or self._base_url
        # The offline model picks the character's rules by `model`. A replay must send the
        # requests the recording saw, so it names models as the configured endpoint did.
        naming = base_url
        if base_url.startswith("replay:"):
            naming = character.model.base_url or settings.base_url
        offline = naming == "offline"
        model = character.id if offline else character.model.model or settings.model
        request: dict[str, Any] = {"model": model, **settings.extra}
        for key in ("temperature", "max_tokens"):
            value = getattr(settings, key)
            if value is not None:
                request[key] = value
        for key in _REQUEST_FIELDS:
            value = getattr(character.model, key)
            if value is not None:
                request[key] = value
        request.update(character.model.extra)
        return ModelSpec(base_url, model, request)

    def client_for(self, base_url: str) -> ModelClient:
        client = self._clients.get(base_url)
        if client is None:
            client = self._factory(base_url) if self._factory else self._build_client(base_url)
            self._clients[base_url] = client
        return client

    def _build_client(self, base_url: str) -> ModelClient:
        settings = self.project.config.model
        key = self._env.get(settings.api_key_env) or None
        offline = base_url == "offline" or base_url.startswith("replay:")
        # A real endpoint goes through the client's own HTTP path (the fast one, or httpx2
        # behind a proxy); an httpx2 client is injected only where a transport must sit in
        # between: the in-process offline model, a replay, or a recording.
        http: httpx2.AsyncClient | None = None
        if offline or self._record:
            http = self._transport_client(base_url)
        client = CompletionsClient(
            endpoint_base_url(base_url),
            None if offline else key,
            http=http,
            max_concurrency=settings.max_concurrency,
            timeouts=Timeouts(
                connect=settings.connect_timeout_s,
                read=settings.timeout_s,
                total=settings.timeout_s * 2,
            ),
            retry=RetryPolicy(max_retries=settings.max_retries),
            include_usage=settings.include_usage,
        )
        self._owned.append(client)
        if http is not None:
            self._owned_http.append(http)
        return client

    def _transport_client(self, base_url: str) -> httpx2.AsyncClient:
        settings = self.project.config.model
        return make_http_client(
            base_url,
            characters=offline_characters(self.project) if base_url == "offline" else None,
            seed=self._seed,
            misbehaviour=Misbehaviour.parse(self._misbehave) if self._misbehave else None,
            record=self._record,
            root=self.project.root,
            timeout=httpx2.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            limits=httpx2.Limits(
                max_connections=settings.max_concurrency,
                max_keepalive_connections=settings.max_concurrency,
            ),
        )

    # -- sessions ---------------------------------------------------------------------------

    async def spawn(
        self,
        npc: str,
        character_id: str,
        *,
        link: GameLink | None = None,
        declared: frozenset[str] | None = None,
        state: Mapping[str, Any] | None = None,
        owner: Session | None = None,
        start: bool = True,
    ) -> NpcSession:
        """Create (or update) the session of ``npc``. Its history is resumed from the store."""
        existing = self.sessions.get(npc)
        if existing is not None and existing.character.id == character_id:
            if state:
                existing.perceive(Perception("state", dict(state)))
            if link is not None:
                existing.link = link
            if owner is not None:
                # A new session of the game took the NPC over: the old session's end (its
                # resume window running out) must not despawn it.
                self._owners[npc] = owner
            return existing
        if existing is not None:
            await self.despawn(npc)
        character = self.project.characters.get(character_id)
        if character is None:
            known = ", ".join(self.project.characters)
            raise KeyError(f"unknown character {character_id!r}; known: {known}")
        spec = self.model_spec(character)
        limits = self.project.config.limits
        history = await self.store.load_history(npc, limits.history_messages)
        turn = await self.store.last_turn(npc)
        prompt = self._prompts.get(character_id)
        if prompt is None:
            prompt = self._prompts[character_id] = PromptBuilder.for_project(
                self.project, character
            )
        session = NpcSession(
            npc,
            character,
            self.project.registry,
            self.client_for(spec.base_url),
            self.store,
            limits,
            link=link,
            prompt=prompt,
            request=spec.request,
            declared=declared,
            state=state,
            on_record=self.on_record,
            history=history,
            turn=turn,
            metrics=self.metrics,
            is_npc=self.sessions.__contains__,
        )
        if session.missing:
            logger.warning(
                "npc=%s: the game does not implement %s; not offered to the model",
                npc,
                ", ".join(session.missing),
            )
        self.sessions[npc] = session
        self._owners[npc] = owner
        self.metrics.sessions = len(self.sessions)
        if start:
            session.start()
        return session

    async def despawn(self, npc: str) -> None:
        session = self.sessions.pop(npc, None)
        self._owners.pop(npc, None)
        self.metrics.sessions = len(self.sessions)
        if session is not None:
            await session.close()

    def perceive(
        self, npc: str, kind: str, data: Mapping[str, Any], ttl_ms: int | None = None
    ) -> bool:
        session = self.sessions.get(npc)
        if session is None:
            return False
        session.perceive(Perception(kind, data, ttl_ms))
        return True

    async def aclose(self) -> None:
        for task in list(self._bridge_tasks):
            task.cancel()
        for task in list(self._bridge_tasks):
            with contextlib.suppress(BaseException):
                await task
        await asyncio.gather(*(self.despawn(npc) for npc in list(self.sessions)))
        for client in self._owned:
            await client.aclose()
        for http in self._owned_http:
            await http.aclose()
        self._owned.clear()
        await self.store.flush()

    # -- the bridge (bridge.SessionHandler) -------------------------------------------------

    def game_capabilities(self) -> set[str]:
        """Game-executed capabilities some character of the project uses."""
        needed: set[str] = set()
        for character in self.project.characters.values():
            for name in character.capabilities:
                if self.project.registry.get(name).executor == "game":
                    needed.add(name)
        return needed

    def missing_capabilities(self, hello: Hello) -> list[str]:
        if hello.capabilities is None:
            return []
        return sorted(self.game_capabilities() - set(hello.capabilities))

    async def session_opened(self, session: Session) -> None:
        task = asyncio.create_task(self._serve_game(session), name=f"game:{session.id}")
        self._bridge_tasks.add(task)
        task.add_done_callback(self._bridge_tasks.discard)

    async def session_closed(self, session: Session) -> None:
        mine = [npc for npc, owner in self._owners.items() if owner is session]
        await asyncio.gather(*(self.despawn(npc) for npc in mine))

    async def _serve_game(self, session: Session) -> None:
        declared = session.capabilities
        for info in list(session.npcs.values()):
            await self._spawn_for(session, info.npc, info.character, info.state, declared)
        async for message in session.incoming():
            if isinstance(message, Event):
                self.perceive(message.npc, message.kind, message.data, message.ttl_ms)
            elif isinstance(message, Spawn):
                await self._spawn_for(
                    session, message.npc, message.character, message.state, declared
                )
            elif isinstance(message, Despawn):
                await self.despawn(message.npc)

    async def _spawn_for(
        self,
        session: Session,
        npc: str,
        character: str,
        state: Mapping[str, Any] | None,
        declared: frozenset[str] | None,
    ) -> None:
        try:
            await self.spawn(
                npc, character, link=session, declared=declared, state=state, owner=session
            )
        except KeyError as exc:
            logger.warning("game %s spawned %s: %s", session.game, npc, exc.args[0])
        except Exception:
            # E.g. an unreadable prompt template: this NPC has no mind, but the game's other
            # messages (and NPCs) must still be served.
            logger.exception("game %s spawned %s: the NPC could not be created", session.game, npc)
