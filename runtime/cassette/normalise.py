"""Normalised requests: what identifies a request in a cassette, and how two requests differ.

A request is identified by method, path (relative to the endpoint's base URL, so a run recorded
against ``https://api.openai.com/v1`` replays at any base URL) and body JSON. Headers are never
part of it (they hold keys and client versions), nor are query parameters that look like
credentials. The key is a SHA-256 of the canonical JSON; when no recording has that key, the
first differing field against the closest recording makes the error actionable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

__all__ = ["describe", "first_difference", "normalise_request", "request_key", "similarity"]

_SECRET_PARAMS = frozenset(
    {"key", "api_key", "api-key", "apikey", "token", "access_token", "sig", "signature"}
)
_SECRET_BODY_KEYS = frozenset({"api_key", "apikey"})
_MISSING = object()


def normalise_request(
    method: str, path: str, query: str, body: bytes, base_path: str = ""
) -> dict[str, Any]:
    """The recorded identity of a request (JSON-compatible)."""
    if base_path and (path == base_path or path.startswith(base_path.rstrip("/") + "/")):
        path = path[len(base_path.rstrip("/")) :] or "/"
    if query:
        pairs = [(k, v) for k, v in parse_qsl(query) if k.lower() not in _SECRET_PARAMS]
        if pairs:
            path = f"{path}?{urlencode(sorted(pairs))}"
    out: dict[str, Any] = {"method": method.upper(), "path": path}
    if body:
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            out["body_text"] = body.decode("utf-8", "replace")
        else:
            if isinstance(parsed, dict):
                parsed = {k: v for k, v in parsed.items() if k not in _SECRET_BODY_KEYS}
            out["body"] = parsed
    return out


def request_key(normalised: Mapping[str, Any]) -> str:
    canonical = json.dumps(normalised, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _leaves(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        if not value:
            out[path] = {}
        for key in value:
            _leaves(value[key], f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list):
        if not value:
            out[path] = []
        for i, item in enumerate(value):
            _leaves(item, f"{path}[{i}]", out)
    else:
        out[path] = value


def _first(a: Any, b: Any, path: str) -> tuple[str, Any, Any] | None:
    """First difference in document order of ``a`` (the new request), then keys only in ``b``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a:
            sub = f"{path}.{key}" if path else str(key)
            if key not in b:
                return sub, a[key], _MISSING
            found = _first(a[key], b[key], sub)
            if found is not None:
                return found
        for key in b:
            if key not in a:
                return (f"{path}.{key}" if path else str(key)), _MISSING, b[key]
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found = _first(x, y, f"{path}[{i}]")
            if found is not None:
                return found
        if len(a) != len(b):
            i = min(len(a), len(b))
            return (
                f"{path}[{i}]",
                a[i] if i < len(a) else _MISSING,
                b[i] if i < len(b) else _MISSING,
            )
        return None
    same = type(a) is type(b) and a == b
    return None if same else (path, a, b)


def first_difference(
    request: Mapping[str, Any], recorded: Mapping[str, Any]
) -> tuple[str, Any, Any] | None:
    """(field path, value in the request, value in the recording), or None when equal.

    Paths read like ``body.messages[3].content``; a side that lacks the field has the value
    `describe` renders as "(absent)".
    """
    return _first(dict(request), dict(recorded), "")


def similarity(request: Mapping[str, Any], recorded: Mapping[str, Any]) -> int:
    """How many leaf fields two requests share (to pick the closest recording)."""
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _leaves(dict(request), "", a)
    _leaves(dict(recorded), "", b)
    return sum(1 for k, v in a.items() if k in b and type(b[k]) is type(v) and b[k] == v)


def describe(value: Any, limit: int = 80) -> str:
    if value is _MISSING:
        return "(absent)"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."
