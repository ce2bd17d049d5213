"""Call correlation without I/O: ids, deadlines, in-flight limit, first answer wins.

Why a heap with lazy deletion instead of one timer per call: most calls finish
long before their deadline, so arming and cancelling a timer per call is wasted
work on the hot path. The table keeps (deadline, id) entries in a heap, skips
entries whose call already ended, and rebuilds the heap when dead entries
outnumber live ones (what asyncio itself does with cancelled timers). The I/O
layer arms a single timer at :meth:`CallTable.next_deadline`.

Ended ids are remembered (bounded) so a late or repeated answer is told apart
from an id that was never issued; both are dropped, the caller logs them.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import DuplicateCall, Overloaded

__all__ = ["AnswerKind", "CallTable", "PendingCall"]

AnswerKind = Literal["late", "unknown"]


@dataclass(slots=True, eq=False)
class PendingCall:
    """A call awaiting its result. ``waiter`` is opaque here (the server puts a future in it)."""

    id: str
    npc: str
    cap: str
    args: dict[str, Any]
    mode: str
    deadline: float
    idempotent: bool
    sent: bool = False
    waiter: Any = None
    progress: Any = None  # optional callback for progress frames
    meta: dict[str, Any] = field(default_factory=dict)

    def deadline_ms(self, now: float) -> int:
        return max(0, int((self.deadline - now) * 1000))


class CallTable:
    def __init__(self, max_in_flight: int, id_prefix: str = "", remember: int = 4096) -> None:
        self.max_in_flight = max_in_flight
        self._prefix = id_prefix
        self._counter = itertools.count(1)
        self._pending: dict[str, PendingCall] = {}
        self._heap: list[tuple[float, str]] = []
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._remember = remember

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._pending

    def get(self, call_id: str) -> PendingCall | None:
        return self._pending.get(call_id)

    def pending(self) -> list[PendingCall]:
        return list(self._pending.values())

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"

    def add(self, call: PendingCall) -> None:
        """Register a call; raises Overloaded or DuplicateCall (nothing is sent then)."""
        if call.id in self._pending:
            raise DuplicateCall(f"call id {call.id!r} is already in flight", call_id=call.id)
        if len(self._pending) >= self.max_in_flight:
            raise Overloaded(
                f"{self.max_in_flight} calls already in flight on this session", call_id=call.id
            )
        self._pending[call.id] = call
        heapq.heappush(self._heap, (call.deadline, call.id))

    def adopt(self, call: PendingCall) -> None:
        """Take over a call from an ended session (same id, same deadline), ignoring the limit."""
        self._pending[call.id] = call
        heapq.heappush(self._heap, (call.deadline, call.id))

    def finish(self, call_id: str) -> PendingCall | None:
        """End a call because its answer arrived (or it was cancelled): first one wins."""
        call = self._pending.pop(call_id, None)
        if call is not None:
            self._remember_ended(call_id)
            if len(self._heap) > 64 and len(self._heap) > 2 * len(self._pending):
                self._compact()
        return call

    def classify(self, call_id: str) -> AnswerKind:
        """Why an answer matched no pending call: it ended already, or was never issued."""
        return "late" if call_id in self._ended else "unknown"

    def expired(self, now: float) -> list[PendingCall]:
        """Remove and return the calls whose deadline has passed."""
        out: list[PendingCall] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, call_id = heapq.heappop(heap)
            call = self._pending.get(call_id)
            if call is not None and call.deadline == deadline:
                del self._pending[call_id]
                self._remember_ended(call_id)
                out.append(call)
        return out

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            deadline, call_id = heap[0]
            call = self._pending.get(call_id)
            if call is not None and call.deadline == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def drain(self) -> list[PendingCall]:
        """Remove and return every pending call (the session ended)."""
        calls = list(self._pending.values())
        for call in calls:
            self._remember_ended(call.id)
        self._pending.clear()
        self._heap.clear()
        return calls

    def _remember_ended(self, call_id: str) -> None:
        ended = self._ended
        ended[call_id] = None
        if len(ended) > self._remember:
            ended.popitem(last=False)

    def _compact(self) -> None:
        self._heap = [(c.deadline, c.id) for c in self._pending.values()]
        heapq.heapify(self._heap)
