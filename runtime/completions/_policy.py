"""Timeouts and the retry budget: the bounds every request runs within.

Why a budget and not just a count: an NPC waiting on a model is a character standing still in a
game, so retries are bounded by count (``max_retries``), by the total time spent sleeping between
attempts (``max_wait``) and by the whole-request deadline (``Timeouts.total``); a ``Retry-After``
longer than what is left of the budget ends the request at once instead of sleeping in vain.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["RetryPolicy", "Timeouts", "parse_retry_after"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; ``None`` disables a bound.

    ``connect``: TCP/TLS connect. ``read``: the longest silence between two reads of the body
    (a stream that stalls). ``write``: sending the request. ``pool``: waiting for a free pooled
    connection. ``total``: the whole request from the call to the last byte, retries and waits
    for a concurrency slot included.
    """

    connect: float | None = 10.0
    read: float | None = 60.0
    write: float | None = 30.0
    pool: float | None = 30.0
    total: float | None = 300.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt ``k`` (0-based) sleeps
    ``min(max_delay, initial_delay * 2**k)`` scaled by a random factor in ``[1 - jitter, 1]``,
    or what ``Retry-After`` asks for."""

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_wait: float = 30.0
    jitter: float = 0.5

    def delay(self, attempt: int, retry_after: float | None, rand: float) -> float:
        if retry_after is not None:
            return max(0.0, retry_after)
        base = min(self.max_delay, self.initial_delay * (2.0**attempt))
        return base * (1.0 - self.jitter * rand)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI) or ``retry-after`` (seconds or an
    HTTP date); ``None`` when absent or unparseable."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0.0 and math.isfinite(value):
            return value
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, seconds)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
