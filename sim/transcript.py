"""The run transcript: one JSON object per line, each line written with a single ``write``.

Every record goes to the file as soon as it is made, through one ``os.write`` of a whole line
on an ``O_APPEND`` descriptor, never through a userspace buffer: a run killed with SIGKILL
leaves a file whose every line is complete JSON (at worst the last record is missing).
Records also stay in memory for the summary, the report and the scenario checks.

Record types written by the sim (docs/simulation.md has the fields): ``run``, ``event``,
``call``, ``result``, ``cancel``, ``line``, ``status``, ``world``, ``assertion``, ``end``;
the runtime adds its own (``turn``, ``model``, ``error``) through ``write``.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["TIMING_FIELDS", "TranscriptWriter", "read_transcript", "strip_timing"]

# Fields that measure real time: they differ between two otherwise identical runs.
TIMING_FIELDS = frozenset(
    {"wall_ms", "wall_s", "tool_ms", "model_ms", "first_speech_ms", "reaction_ms", "turn_ms"}
)


def _clean(value: Any) -> Any:
    """JSON has no NaN/Infinity and no bytes; a transcript line must stay parseable."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


class TranscriptWriter:
    """Appends records to ``path`` (or only to memory when ``path`` is None).

    ``clock`` gives the simulated time stamped as ``t`` on records that lack one, so records
    pushed from outside the sim (the runtime's ``turn`` records) line up with the world's.
    Safe to call from one event loop and from other threads (a lock guards each line).
    """

    def __init__(
        self,
        path: Path | None,
        *,
        clock: Callable[[], float] | None = None,
        keep: bool = True,
    ) -> None:
        self.path = path
        self.clock = clock
        self.keep = keep
        self.records: list[dict[str, Any]] = []
        self.count = 0
        self.by_type: Counter[str] = Counter()
        self.tokens = 0  # summed from the runtime's ``turn`` records, for live counters
        self._lock = threading.Lock()
        self._start = time.perf_counter()
        self._fd: int | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)

    def write(self, record: Mapping[str, Any]) -> None:
        """Stamp (``t`` if missing, ``wall_ms``), keep, and append one record as one line."""
        rec = dict(record)
        if "t" not in rec and self.clock is not None:
            rec["t"] = self.clock()
        rec.setdefault("wall_ms", round((time.perf_counter() - self._start) * 1000, 3))
        try:
            line = json.dumps(rec, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            rec = _clean(rec)
            line = json.dumps(rec, ensure_ascii=False, separators=(",", ":"))
        data = (line + "\n").encode("utf-8")
        with self._lock:
            if self.keep:
                self.records.append(rec)
            self.count += 1
            self.by_type[str(rec.get("type"))] += 1
            if rec.get("type") == "turn":
                self.tokens += _tokens(rec)
            if self._fd is not None:
                view = memoryview(data)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> TranscriptWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _tokens(rec: Mapping[str, Any]) -> int:
    total = 0
    for key in ("prompt_tokens", "completion_tokens"):
        value = rec.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            total += value
    tokens = rec.get("tokens")
    if isinstance(tokens, int) and not isinstance(tokens, bool) and total == 0:
        total = tokens
    return total


def read_transcript(path: Path) -> list[dict[str, Any]]:
    """All complete records of a transcript; a torn last line (impossible with this writer,
    possible with others) is skipped rather than failing the whole read."""
    return list(_iter(path))


def _iter(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                return
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield rec


def strip_timing(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record without real-time measurements, for comparing two runs."""
    return {k: v for k, v in record.items() if k not in TIMING_FIELDS}
