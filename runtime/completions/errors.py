"""The completions client's exception tree. Every failure of a request ends as one of these;
transport exceptions (httpx2's, and the native HTTP client's) are mapped at one boundary
(``_transport.map_transport_error``, used by the client) and never leak out.

::

    CompletionsError                      .retryable says whether a retry could help
    ├── ProviderError                     the provider answered 200 then reported an error
    │                                     (`event: error`, or an `error` object in a chunk/body)
    ├── HTTPStatusError                   status, body, headers (non-2xx answer)
    │   ├── BadRequest          400, 422  not retried
    │   ├── Unauthorized        401, 403  not retried
    │   ├── NotFound            404       not retried (unknown model or wrong base_url)
    │   ├── RateLimited         429       retried, honouring Retry-After
    │   └── ServerError         5xx       retried        (408 and 409 are retried too)
    ├── ConnectError                      could not connect (DNS, refused, TLS); retried
    ├── TimeoutError                      .phase: "connect" | "read" | "write" | "pool" | "total"
    │                                     (also a builtins.TimeoutError)
    └── StreamProtocolError               the body is not a valid completion stream
        └── StreamTruncated               the body ended before the completion did; retried
                                          while nothing had been handed to the caller

API keys never appear in any of them: every text that came from the wire or from the request
passes through :func:`redact` with the configured key before it is stored.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "BadRequest",
    "CompletionsError",
    "ConnectError",
    "HTTPStatusError",
    "NotFound",
    "ProviderError",
    "RateLimited",
    "ServerError",
    "StreamProtocolError",
    "StreamTruncated",
    "TimeoutError",
    "Unauthorized",
    "error_for_status",
    "redact",
]

_REDACTED = "[redacted]"


def redact(text: str, secret: str | None) -> str:
    """Remove ``secret`` from ``text`` (providers echo keys back in 401 bodies)."""
    if secret and len(secret) >= 4 and secret in text:
        return text.replace(secret, _REDACTED)
    return text


class CompletionsError(Exception):
    """Base of every error the completions client raises."""

    retryable: bool = False


class ProviderError(CompletionsError):
    """The provider reported an error inside a 200 response (mid-stream or in the body)."""

    def __init__(self, message: str, code: str | int | None = None, type: str | None = None):
        self.message = message
        self.code = code
        self.type = type
        details = ", ".join(
            f"{k}={v!r}" for k, v in (("code", code), ("type", type)) if v is not None
        )
        super().__init__(f"provider error: {message}" + (f" ({details})" if details else ""))
        self.retryable = type in {"server_error", "overloaded_error"} or (
            isinstance(code, int) and not isinstance(code, bool) and (code == 429 or code >= 500)
        )

    @classmethod
    def from_payload(cls, payload: object, secret: str | None = None) -> ProviderError:
        """Build from ``{"error": {...}}``, a bare error object, or any text the provider sent."""
        error = payload.get("error", payload) if isinstance(payload, dict) else payload
        if isinstance(error, dict):
            message = error.get("message")
            code = error.get("code")
            kind = error.get("type")
            if not isinstance(message, str):
                message = json.dumps(error, ensure_ascii=False)[:500]
            return cls(
                redact(message, secret),
                code if isinstance(code, str | int) and not isinstance(code, bool) else None,
                kind if isinstance(kind, str) else None,
            )
        text = error if isinstance(error, str) else json.dumps(error, ensure_ascii=False)
        return cls(redact(text[:500], secret))


class HTTPStatusError(CompletionsError):
    """A non-2xx answer. ``body`` is the (bounded, redacted) response text."""

    def __init__(self, status: int, body: str, headers: Mapping[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = dict(headers)
        self.message, self.code, self.type = _error_fields(body)
        super().__init__(f"HTTP {status}: {self.message or body[:300] or '(empty body)'}")
        self.retryable = status in (408, 409, 429) or status >= 500


class BadRequest(HTTPStatusError):
    pass


class Unauthorized(HTTPStatusError):
    pass


class NotFound(HTTPStatusError):
    pass


class RateLimited(HTTPStatusError):
    pass


class ServerError(HTTPStatusError):
    pass


_STATUS_CLASSES: dict[int, type[HTTPStatusError]] = {
    400: BadRequest,
    422: BadRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    429: RateLimited,
}


def error_for_status(
    status: int, body: str, headers: Mapping[str, str], secret: str | None = None
) -> HTTPStatusError:
    cls = _STATUS_CLASSES.get(status) or (ServerError if status >= 500 else HTTPStatusError)
    clean_headers = {k: redact(v, secret) for k, v in headers.items()}
    return cls(status, redact(body, secret), clean_headers)


def _error_fields(body: str) -> tuple[str | None, str | int | None, str | None]:
    try:
        payload: Any = json.loads(body)
    except ValueError:
        return None, None, None
    error = ProviderError.from_payload(payload) if isinstance(payload, dict) else None
    if error is None or "error" not in payload:
        return None, None, None
    return error.message, error.code, error.type


class ConnectError(CompletionsError):
    retryable = True


class TimeoutError(CompletionsError, builtins.TimeoutError):
    def __init__(self, phase: str, seconds: float | None = None) -> None:
        self.phase = phase
        self.seconds = seconds
        after = f" after {seconds:g} s" if seconds is not None else ""
        super().__init__(f"{phase} timeout{after}")
        # A slow first byte may be a busy server; the whole-request budget is final.
        self.retryable = phase != "total"


class StreamProtocolError(CompletionsError):
    pass


class StreamTruncated(StreamProtocolError):
    retryable = True
