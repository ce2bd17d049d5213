"""The bridge: websocket + msgpack protocol v1 between the runtime and any game.

Layers (design.md 3.1: the protocol core does no I/O):

- sans-I/O core: :mod:`bridge.messages` (frozen strict models, one union on ``t``),
  :mod:`bridge.codec` (frame <-> message with size-derived limits),
  :mod:`bridge.protocol` (per-connection state machine, hello/auth/version rules,
  event token bucket), :mod:`bridge.calls` (call correlation),
  :mod:`bridge.session_core` (NPCs, speech streams, resume bookkeeping);
- I/O: :mod:`bridge.server` (``websockets.asyncio.server``), :mod:`bridge.session`
  (the runtime's per-session handle), :mod:`bridge.client` (``GameClient``), and
  ``bridge._transport`` (websockets connections that hand complete frames to the
  core from the protocol callback and write batched frames: the hot path).

Runtime-facing API::

    config = BridgeConfig(host=..., port=0, token="secret")     # npc.toml [bridge] keys
    async with BridgeServer(config, handler) as server:         # server.port: bound port
        ...

    class Handler:                                               # SessionHandler protocol
        def missing_capabilities(self, hello: Hello) -> list[str]: ...   # -> welcome.missing
        async def session_opened(self, session: Session) -> None: ...    # new session welcomed
        async def session_closed(self, session: Session) -> None: ...    # window over / stop

    session.id, session.game, session.capabilities (frozenset | None), session.npcs
    (Mapping[npc id, NpcInfo(npc, character, state)]), session.connected, session.ended
    data = await session.call(npc, cap, args, mode="call", timeout_s=30, idempotent=False)
    await session.call(npc, cap, args, mode="fire")      # returns once queued
    await session.cancel(call_id, reason)                 # caller gets CallCancelled
    session.say(npc, stream, text); session.say_end(npc, stream, "done"); session.status(npc, s)
        # never block: bounded outbox + send deadline; return False when not deliverable
    async for msg in session.incoming(): ...              # Spawn | Despawn | Event

Game-facing API: ``GameClient(url, game=..., token=..., capabilities=registry_or_names,
npcs=[(npc, character)])``; ``client.handle(cap, async_fn)``; ``await client.event(...)``;
``async for msg in client.messages()``.

Exception tree (see :mod:`bridge.errors`)::

    BridgeError (.code)
    ├── ProtocolError (.close_code, .call_id, .path)
    ├── CallError
    │   ├── CallTimeout · CallCancelled · Disconnected · Overloaded · DuplicateCall
    │   ├── UnknownNpc · UnknownCapability
    │   └── GameError (the game's own code and message)
    ├── HandshakeRejected (.close_code, .http_status)
    └── GameCallError (raised by GameClient handlers)
"""

from __future__ import annotations

from .calls import CallTable, PendingCall
from .client import GameClient, capability_names
from .codec import decode_frame, encode, encode_map, unpack_frame
from .config import BridgeConfig
from .errors import (
    BridgeError,
    CallCancelled,
    CallError,
    CallTimeout,
    CloseCode,
    Disconnected,
    DuplicateCall,
    ErrorCode,
    GameCallError,
    GameError,
    HandshakeRejected,
    Overloaded,
    ProtocolError,
    UnknownCapability,
    UnknownNpc,
)
from .messages import (
    MESSAGE_ADAPTER,
    PROTOCOL_VERSION,
    SUBPROTOCOL,
    Call,
    Cancel,
    Despawn,
    Error,
    ErrorInfo,
    Event,
    Hello,
    Message,
    NpcEntry,
    NpcState,
    Progress,
    Result,
    Say,
    SayEnd,
    Spawn,
    Status,
    Welcome,
)
from .protocol import BridgeConnection, ConnectionState, TokenBucket
from .schema import message_schema, schema_json
from .server import BridgeServer, SessionHandler
from .session import Incoming, Session
from .session_core import NpcInfo, SessionCore

__all__ = [
    "MESSAGE_ADAPTER",
    "PROTOCOL_VERSION",
    "SUBPROTOCOL",
    "BridgeConfig",
    "BridgeConnection",
    "BridgeError",
    "BridgeServer",
    "Call",
    "CallCancelled",
    "CallError",
    "CallTable",
    "CallTimeout",
    "Cancel",
    "CloseCode",
    "ConnectionState",
    "Despawn",
    "Disconnected",
    "DuplicateCall",
    "Error",
    "ErrorCode",
    "ErrorInfo",
    "Event",
    "GameCallError",
    "GameClient",
    "GameError",
    "HandshakeRejected",
    "Hello",
    "Incoming",
    "Message",
    "NpcEntry",
    "NpcInfo",
    "NpcState",
    "Overloaded",
    "PendingCall",
    "Progress",
    "ProtocolError",
    "Result",
    "Say",
    "SayEnd",
    "Session",
    "SessionCore",
    "SessionHandler",
    "Spawn",
    "Status",
    "TokenBucket",
    "UnknownCapability",
    "UnknownNpc",
    "Welcome",
    "capability_names",
    "decode_frame",
    "encode",
    "encode_map",
    "message_schema",
    "schema_json",
    "unpack_frame",
]
