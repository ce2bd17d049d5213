"""Bearer keys for the endpoint, read once from the environment variable named by
``[http] api_keys_env`` (comma-separated, so keys can be rotated by listing old and new).

Every configured key is compared on every request with ``hmac.compare_digest`` and the loop
never exits early, so response time says nothing about how much of a key was right. An unset or
empty variable means an open endpoint: right for ``npc serve`` on 127.0.0.1 during development,
wrong anywhere else, hence the warning at start-up.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping

from runtime.endpoint.errors import NotAuthenticated

__all__ = ["ApiKeys"]

logger = logging.getLogger("runtime.endpoint")


class ApiKeys:
    def __init__(self, keys: tuple[str, ...], variable: str) -> None:
        self._keys = tuple(key.encode() for key in keys)
        self.variable = variable

    @classmethod
    def from_env(cls, variable: str, environ: Mapping[str, str]) -> ApiKeys:
        raw = environ.get(variable, "")
        keys = tuple(part.strip() for part in raw.split(",") if part.strip())
        if not keys:
            logger.warning(
                "the character endpoint is OPEN: %s is unset or empty, so no API key is "
                "required; set it (comma-separated keys) before exposing the endpoint",
                variable,
            )
        return cls(keys, variable)

    @property
    def open(self) -> bool:
        return not self._keys

    def check(self, authorization: str | None) -> None:
        """Raise :class:`NotAuthenticated` unless the header carries a configured key."""
        if not self._keys:
            return
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise NotAuthenticated(
                "Missing API key: send 'Authorization: Bearer YOUR_KEY'.",
                code="missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        given = token.encode()
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise NotAuthenticated(
                "Incorrect API key provided.",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
