"""Errors of the offline model (the tree is drawn in `runtime.offline`)."""

from __future__ import annotations

__all__ = ["OfflineConfigError", "OfflineError"]


class OfflineError(Exception):
    """Base of every error raised by `runtime.offline`."""


class OfflineConfigError(OfflineError, ValueError):
    """A character, rule or misbehaviour setting the offline model cannot use.

    Raised at construction, never per request: a request the model cannot serve becomes an
    HTTP error response in OpenAI's shape instead.
    """
