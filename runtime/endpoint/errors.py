"""Errors of the character endpoint, each carrying the HTTP answer it becomes.

Every failure a client can cause or observe is one of these, rendered in OpenAI's shape
``{"error": {"message", "type", "param", "code"}}`` so that the openai SDK raises its own typed
exceptions (``AuthenticationError``, ``NotFoundError``, ``BadRequestError``, ...). Nothing else
(no framework validation error, no traceback) ever reaches a client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from runtime.completions import CompletionsError, ProviderError, RateLimited

__all__ = [
    "BodyTooLarge",
    "EndpointError",
    "InvalidRequest",
    "ModelNotFound",
    "NotAuthenticated",
    "RouteError",
    "UpstreamFailed",
    "UpstreamRateLimited",
    "upstream_error",
]


class EndpointError(Exception):
    """Base: ``status`` and the four OpenAI error fields; ``headers`` go on the response."""

    status: int = 500
    type: str = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def payload(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body(self) -> bytes:
        return json.dumps(self.payload(), ensure_ascii=False, separators=(",", ":")).encode()


class InvalidRequest(EndpointError):
    """400: the body is not JSON, or a field is missing or invalid (``param`` names it)."""

    status = 400
    type = "invalid_request_error"


class BodyTooLarge(EndpointError):
    status = 413
    type = "invalid_request_error"


class NotAuthenticated(EndpointError):
    status = 401
    type = "invalid_request_error"


class ModelNotFound(EndpointError):
    """404 ``model_not_found``: the project has no character with that id."""

    status = 404
    type = "invalid_request_error"


class RouteError(EndpointError):
    """404 unknown path, 405 wrong method: Starlette's own HTTP errors, reshaped."""

    type = "invalid_request_error"

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)
        self.status = status


class UpstreamRateLimited(EndpointError):
    """429: the character's model is rate limited (after the client's own retries)."""

    status = 429
    type = "rate_limit_error"


class UpstreamFailed(EndpointError):
    """502: the character's model failed or misbehaved beyond what the turn loop absorbs."""

    status = 502
    type = "server_error"


_MAX_DETAIL = 300


def upstream_error(exc: CompletionsError | None, detail: str | None) -> EndpointError:
    """Map a failed turn to 429 or 502. ``exc`` is what the model client raised (None when the
    turn failed for another reason, e.g. the model kept calling tools with bad arguments)."""
    text = (str(exc) if exc is not None else detail or "the turn failed")[:_MAX_DETAIL]
    if _rate_limited(exc):
        retry_after = "1"
        if isinstance(exc, RateLimited):
            retry_after = exc.headers.get("retry-after") or exc.headers.get("Retry-After") or "1"
        return UpstreamRateLimited(
            f"The character's model is rate limited; retry later. ({text})",
            code="rate_limit_exceeded",
            headers={"Retry-After": retry_after},
        )
    return UpstreamFailed(f"The character's model failed: {text}", code="upstream_error")


def _rate_limited(exc: CompletionsError | None) -> bool:
    if isinstance(exc, RateLimited):
        return True
    if isinstance(exc, ProviderError):
        return exc.code in (429, "rate_limit_exceeded") or exc.type == "rate_limit_error"
    return False
