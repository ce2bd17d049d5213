"""Games for the conformance kit's own tests: the reference harness on ``bridge.GameClient``
and a deliberately broken client speaking the protocol by hand."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bridge import Call, GameCallError, GameClient, Message, Say, SayEnd, Status
from bridge.conformance import PROFILE_CAPABILITIES

HARNESS_NPC = ("kit-npc", "guard")


def profile_client(
    url: str, *, token: str | None = None, game: str = "python-harness"
) -> tuple[GameClient, asyncio.Event]:
    """The conformance harness on the reference client: what an engine harness mirrors.

    Returns the client and an event set once ``kitClose`` closed it."""
    client = GameClient(
        url,
        game=game,
        token=token,
        token_in_hello=token is not None,
        capabilities=list(PROFILE_CAPABILITIES),
        npcs=[HARNESS_NPC],
        reconnect=False,
    )
    counter = 0
    speech: dict[str, str] = {}
    ended: dict[str, str] = {}
    status: dict[str, str] = {}

    def heard(msg: Message) -> None:
        if isinstance(msg, Say):
            speech[msg.stream] = speech.get(msg.stream, "") + msg.text
        elif isinstance(msg, SayEnd):
            ended[msg.stream] = msg.reason
        elif isinstance(msg, Status):
            status[msg.npc] = msg.state

    client.on_message(heard)

    async def echo(call: Call) -> Any:
        return call.args

    async def count(call: Call) -> Any:
        nonlocal counter
        counter += 1
        return {"count": counter}

    async def sleep(call: Call) -> Any:
        nonlocal counter
        ms = call.args.get("ms")
        if not isinstance(ms, int) or ms < 0:
            raise GameCallError("BAD_ARGS", "ms must be a non-negative int")
        await asyncio.sleep(ms / 1000)
        counter += 1
        return {"slept": ms}

    async def emit(call: Call) -> Any:
        await client.event(call.npc, call.args["kind"], call.args["data"])
        return {"sent": True}

    async def speech_of(call: Call) -> Any:
        stream = call.args["stream"]
        return {
            "text": speech.get(stream),
            "reason": ended.get(stream),
            "status": status.get(call.npc),
        }

    finished = asyncio.Event()

    async def close_later() -> None:
        await client.close()
        finished.set()

    async def close(call: Call) -> None:
        asyncio.get_running_loop().create_task(close_later())

    for name, fn in (
        ("kitEcho", echo),
        ("kitCount", count),
        ("kitSleep", sleep),
        ("kitEmit", emit),
        ("kitSpeech", speech_of),
        ("kitClose", close),
    ):
        client.handle(name, fn)
    return client, finished


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _lossy(value: Any) -> Any:
    """What a codec that writes integral floats as ints would send."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, Mapping):
        return {k: _lossy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lossy(v) for v in value]
    return value


class BrokenGame:
    """A game written by hand with selectable faults (each maps to the checks it must fail)."""

    def __init__(
        self,
        url: str,
        *,
        executes_resent_twice: bool = False,
        ignores_unknown: bool = False,
        text_frames: bool = False,
        ignores_cancel: bool = False,
        lossy_floats: bool = False,
    ) -> None:
        self.url = url
        self.executes_resent_twice = executes_resent_twice
        self.ignores_unknown = ignores_unknown
        self.text_frames = text_frames
        self.ignores_cancel = ignores_cancel
        self.lossy_floats = lossy_floats
        self.counter = 0
        self.cache: dict[str, bytes] = {}
        self.running: dict[str, asyncio.Task[None]] = {}
        self.speech: dict[str, str] = {}
        self.ended: dict[str, str] = {}
        self.status: dict[str, str] = {}

    async def run(self) -> None:
        async with connect(
            self.url, subprotocols=[Subprotocol("npc-bridge.v1")], compression=None, proxy=None
        ) as ws:
            await ws.send(
                _pack(
                    {
                        "t": "hello",
                        "proto": 1,
                        "game": "broken",
                        "capabilities": list(PROFILE_CAPABILITIES),
                        "npcs": [{"npc": HARNESS_NPC[0], "character": HARNESS_NPC[1]}],
                    }
                )
            )
            with contextlib.suppress(ConnectionClosed):
                async for data in ws:
                    assert isinstance(data, bytes)
                    await self._on(ws, msgpack.unpackb(data, raw=False))
            for task in self.running.values():
                task.cancel()

    async def _on(self, ws: ClientConnection, msg: dict[str, Any]) -> None:
        t = msg["t"]
        if t == "call":
            await self._call(ws, msg)
        elif t == "cancel" and not self.ignores_cancel:
            task = self.running.pop(msg["id"], None)
            if task is not None:
                task.cancel()
        elif t == "say":
            self.speech[msg["stream"]] = self.speech.get(msg["stream"], "") + msg["text"]
        elif t == "say_end":
            self.ended[msg["stream"]] = msg["reason"]
        elif t == "status":
            self.status[msg["npc"]] = msg["state"]

    async def _answer(self, ws: ClientConnection, call_id: str, data: Any) -> None:
        frame = _pack({"t": "result", "id": call_id, "ok": True, "data": data})
        self.cache[call_id] = frame
        await ws.send(frame)

    async def _call(self, ws: ClientConnection, call: dict[str, Any]) -> None:
        cid, cap, args = call["id"], call["cap"], call["args"]
        if not self.executes_resent_twice:
            if cid in self.cache:
                await ws.send(self.cache[cid])
                return
            if cid in self.running:
                return
        if cap == "kitEcho":
            await self._answer(ws, cid, _lossy(args) if self.lossy_floats else args)
        elif cap == "kitCount":
            self.counter += 1
            await self._answer(ws, cid, {"count": self.counter})
        elif cap == "kitSleep":
            self.running[cid] = asyncio.get_running_loop().create_task(
                self._sleep(ws, cid, args["ms"])
            )
        elif cap == "kitEmit":
            event = {"t": "event", "npc": call["npc"], "kind": args["kind"], "data": args["data"]}
            await ws.send(json.dumps(event) if self.text_frames else _pack(event))
            await self._answer(ws, cid, {"sent": True})
        elif cap == "kitSpeech":
            stream = args["stream"]
            data = {
                "text": self.speech.get(stream),
                "reason": self.ended.get(stream),
                "status": self.status.get(call["npc"]),
            }
            await self._answer(ws, cid, data)
        elif cap == "kitClose":
            await ws.close(1000)
        elif not self.ignores_unknown:
            error = {"code": "UNKNOWN_CAPABILITY", "message": f"no handler for {cap}"}
            await ws.send(_pack({"t": "result", "id": cid, "ok": False, "error": error}))

    async def _sleep(self, ws: ClientConnection, cid: str, ms: int) -> None:
        await asyncio.sleep(ms / 1000)
        self.running.pop(cid, None)
        self.counter += 1
        with contextlib.suppress(ConnectionClosed):
            await self._answer(ws, cid, {"slept": ms})
