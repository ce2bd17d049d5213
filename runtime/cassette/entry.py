"""One cassette line: a normalised request and the raw response it got.

JSON Lines, one exchange per line, in the order responses completed. The response body is
stored as text when it is UTF-8 (readable diffs of recorded SSE) and as base64 otherwise
(compressed bodies keep their ``content-encoding`` and are stored undecoded, so replay hands
the client the very bytes the server sent). No timestamps, no request headers.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from runtime.cassette.errors import CassetteFormatError

__all__ = ["KEPT_HEADERS", "Exchange"]

# Response headers that change what a client does with the body; everything else is noise
# (dates, request ids, rate-limit counters) that would make cassettes differ run to run.
KEPT_HEADERS = frozenset(
    {"content-type", "content-encoding", "retry-after", "retry-after-ms", "x-should-retry"}
)


@dataclass(frozen=True, slots=True)
class Exchange:
    """``status`` None with ``error`` set: the request failed before any response (connect).
    ``error`` with a status: the body broke off after those bytes (read error)."""

    key: str
    request: dict[str, Any]
    status: int | None
    headers: tuple[tuple[str, str], ...]
    body: bytes
    error: str | None = None
    partial: bool = False

    def to_line(self) -> str:
        response: dict[str, Any] | None = None
        if self.status is not None:
            response = {"status": self.status, "headers": dict(self.headers)}
            try:
                response["text"] = self.body.decode("utf-8")
            except UnicodeDecodeError:
                response["base64"] = base64.b64encode(self.body).decode("ascii")
        line: dict[str, Any] = {"key": self.key, "request": self.request, "response": response}
        if self.error is not None:
            line["error"] = self.error
        if self.partial:
            line["partial"] = True
        return json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"

    @classmethod
    def from_line(cls, text: str, path: str, lineno: int) -> Exchange:
        def bad(message: str) -> CassetteFormatError:
            return CassetteFormatError(path, lineno, message)

        try:
            data = json.loads(text)
        except ValueError as exc:
            raise bad(f"not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise bad("a line must be a JSON object")
        key, request, response = data.get("key"), data.get("request"), data.get("response")
        if not isinstance(key, str) or not isinstance(request, dict):
            raise bad("`key` (string) and `request` (object) are required")
        error = data.get("error")
        if error is not None and not isinstance(error, str):
            raise bad("`error` must be a string")
        if response is None:
            if error is None:
                raise bad("a line without `response` needs an `error`")
            return cls(key, request, None, (), b"", error, bool(data.get("partial")))
        if not isinstance(response, dict) or not isinstance(response.get("status"), int):
            raise bad("`response.status` must be an integer")
        headers = response.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise bad("`response.headers` must map strings to strings")
        if isinstance(response.get("text"), str):
            body = response["text"].encode("utf-8")
        elif isinstance(response.get("base64"), str):
            try:
                body = base64.b64decode(response["base64"], validate=True)
            except (binascii.Error, ValueError):
                raise bad("`response.base64` is not valid base64") from None
        else:
            raise bad("`response` needs `text` or `base64`")
        return cls(
            key,
            request,
            response["status"],
            tuple(headers.items()),
            body,
            error,
            bool(data.get("partial")),
        )
