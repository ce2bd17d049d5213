"""One HTTP client for any model endpoint spec: ``offline``, ``replay:PATH`` or a URL.

The composition root turns ``npc.toml [model] base_url`` (and ``--record`` / ``--replay``)
into the ``httpx2.AsyncClient`` it injects into the completions client. Every mode goes
through real HTTP semantics and the client's real SSE parsing: the offline model is an ASGI app
behind ``httpx2.ASGITransport``, a replay serves recorded bytes, recording tees any of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import httpx2

from runtime.cassette import RecordingTransport, ReplayTransport
from runtime.offline.app import OfflineModel
from runtime.offline.character import OfflineCharacter
from runtime.offline.misbehaviour import Misbehaviour

__all__ = ["OFFLINE_BASE_URL", "REPLAY_BASE_URL", "endpoint_base_url", "make_http_client"]

# Base URLs of the in-process endpoints (`.invalid` never resolves: nothing can leak out).
OFFLINE_BASE_URL = "http://offline.invalid/v1"
REPLAY_BASE_URL = "http://replay.invalid/v1"


def endpoint_base_url(spec: str) -> str:
    """The HTTP base URL the completions client should post to for a ``base_url`` spec."""
    if spec == "offline":
        return OFFLINE_BASE_URL
    if spec.startswith("replay:"):
        return REPLAY_BASE_URL
    return spec.rstrip("/")


def make_http_client(
    base_url: str,
    *,
    characters: Mapping[str, OfflineCharacter] | None = None,
    seed: int = 0,
    misbehaviour: Misbehaviour | None = None,
    app: OfflineModel | None = None,
    record: str | Path | None = None,
    root: str | Path | None = None,
    timeout: httpx2.Timeout | float = 60.0,
    limits: httpx2.Limits | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` whose ``base_url`` is the endpoint for ``base_url`` spec.

    - ``"offline"``: the offline model in-process (``app``, or one built from ``characters``,
      ``seed`` and ``misbehaviour``) behind ``httpx2.ASGITransport``.
    - ``"replay:PATH"``: answers from the cassette at PATH (relative to ``root`` if given);
      raises `runtime.cassette.CassetteFormatError` now if it cannot be read.
    - anything else: a URL, over the network.

    ``record``: also append every exchange to that cassette (any mode but replay). The client
    owns its transports: ``await client.aclose()`` closes the cassette file.
    """
    transport: httpx2.AsyncBaseTransport
    if base_url == "offline":
        model = app or OfflineModel(characters or {}, seed=seed, misbehaviour=misbehaviour)
        transport = httpx2.ASGITransport(model)
    elif base_url.startswith("replay:"):
        if record is not None:
            raise ValueError("cannot record while replaying (replay:PATH with record=...)")
        path = Path(base_url.removeprefix("replay:"))
        if root is not None and not path.is_absolute():
            path = Path(root) / path
        transport = ReplayTransport(path, base_path=httpx2.URL(REPLAY_BASE_URL).path)
    else:
        transport = httpx2.AsyncHTTPTransport(limits=limits or httpx2.Limits())
    url = endpoint_base_url(base_url)
    if record is not None:
        cassette = Path(record)
        if root is not None and not cassette.is_absolute():
            cassette = Path(root) / cassette
        transport = RecordingTransport(transport, cassette, base_path=httpx2.URL(url).path)
    return httpx2.AsyncClient(
        transport=transport,
        base_url=url,
        timeout=timeout,
        headers=dict(headers or {}),
    )
