"""Capabilities declared in Python: typed functions, docstrings become descriptions.

Functions with ``executor="game"`` (the default) have no body: they are typed
declarations of actions the game performs. ``executor="runtime"`` functions run
inside the runtime and receive a context as their first parameter.
"""

from __future__ import annotations

from typing import Any, Literal

from capabilities import CapabilityContext, capability


@capability(mode="fire", idempotent=True)
def say(text: str) -> None:
    """Say a line out loud; everyone within earshot hears it.

    Args:
        text: The words spoken, one or two short sentences.
    """


@capability(mode="fire", idempotent=True)
def emote(kind: Literal["wave", "bow", "nod", "laugh", "shrug", "angry"]) -> None:
    """Play a body-language animation.

    Args:
        kind: Which gesture to play.
    """


@capability(mode="call", timeout_s=60, idempotent=True)
def follow(target: str, distance: float | None = None) -> None:
    """Follow someone until they stop or a minute has passed.

    Args:
        target: Id of the player or NPC to follow.
        distance: How far behind to stay, in metres (default 2).
    """


@capability(executor="runtime", timeout_s=5)
async def recall(ctx: CapabilityContext, topic: str) -> dict[str, Any]:
    """Search what this character knows and has learned about a topic.

    Args:
        topic: A word or short phrase to look up, e.g. "password" or "prices".
    """
    words = {w for w in topic.lower().split() if len(w) > 2} or {topic.lower()}
    known = [fact for fact in ctx.knowledge if any(w in fact.lower() for w in words)]
    learned = await ctx.memory.recall(topic, limit=5)
    return {"topic": topic, "facts": known + learned}


@capability(executor="runtime", timeout_s=5)
async def remember(ctx: CapabilityContext, fact: str) -> dict[str, Any]:
    """Store a fact learned in conversation, to recall it in later conversations.

    Args:
        fact: The fact, as one short sentence.
    """
    await ctx.memory.remember(fact)
    return {"remembered": fact}
