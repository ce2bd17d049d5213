"""A conversation history bounded by message count and by an approximate token budget.

The oldest messages go first, but an assistant message with ``tool_calls`` and the ``tool``
messages answering it are dropped together: a window that starts with a tool result, or an
assistant call without its results, is rejected by most providers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["History", "estimate_tokens"]


def estimate_tokens(message: dict[str, Any]) -> int:
    """About four characters per token, plus a little per message: good enough for a budget."""
    size = 4
    content = message.get("content")
    if isinstance(content, str):
        size += len(content) // 4
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        size += (len(function.get("name", "")) + len(function.get("arguments", ""))) // 4 + 4
    return size


class History:
    def __init__(
        self, max_messages: int, max_tokens: int, messages: Iterable[dict[str, Any]] = ()
    ) -> None:
        self.max_messages = max_messages
        self.max_tokens = max_tokens
        self._messages: deque[dict[str, Any]] = deque()
        self._tokens: deque[int] = deque()
        self._total = 0
        for message in messages:
            self._push(message)
        self._trim()

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._messages)

    def copy(self) -> History:
        """A cheap copy (the messages themselves are shared, not copied)."""
        clone = History.__new__(History)
        clone.max_messages, clone.max_tokens = self.max_messages, self.max_tokens
        clone._messages, clone._tokens = self._messages.copy(), self._tokens.copy()
        clone._total = self._total
        return clone

    @property
    def tokens(self) -> int:
        return self._total

    def append(self, message: dict[str, Any]) -> None:
        self._push(message)
        self._trim()

    def extend(self, messages: Iterable[dict[str, Any]]) -> None:
        for message in messages:
            self._push(message)
        self._trim()

    def _push(self, message: dict[str, Any]) -> None:
        tokens = estimate_tokens(message)
        self._messages.append(message)
        self._tokens.append(tokens)
        self._total += tokens

    def _pop(self) -> None:
        self._messages.popleft()
        self._total -= self._tokens.popleft()

    def _trim(self) -> None:
        # Drop whole units (a message and the tool results answering it), oldest first, and
        # never the newest unit: a turn must always see what triggered it, and a call must
        # stay with its results even when the pair alone is over the budget.
        self._drop_orphans()
        messages = self._messages
        while len(messages) > self.max_messages or self._total > self.max_tokens:
            unit = 1
            while unit < len(messages) and messages[unit].get("role") == "tool":
                unit += 1
            if unit >= len(messages):
                break
            for _ in range(unit):
                self._pop()

    def _drop_orphans(self) -> None:
        """A window may not start with tool results whose call was dropped (a window loaded
        from the store can begin mid-unit): a provider rejects them."""
        while self._messages and self._messages[0].get("role") == "tool":
            self._pop()
