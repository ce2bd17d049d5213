"""Record and replay model traffic: byte-exact, offline, as httpx2 transports.

`RecordingTransport` wraps any transport and appends one JSON line per exchange to a cassette
(the normalised request: method, path relative to the base URL, body JSON; no headers, keys or
timestamps; and the raw response: status, a few headers, body bytes). `ReplayTransport` serves
those bytes back for matching requests, so a run against a real model is replayed offline in
tests and regression runs; both plug into the completions client's injected
``httpx2.AsyncClient`` (`runtime.offline.make_http_client` builds the client for
``base_url = "replay:PATH"`` and for record mode).

Exceptions::

    CassetteError                 base of this package (not an httpx2 error: never retried)
     ├── CassetteFormatError      a cassette line cannot be read (names file and line)
     ├── ReplayMismatch           no recording matches a request (.field: the first field that
     │                            differs from the closest recording, e.g. body.messages[3].content)
     └── ReplayExhausted          a request is sent more often than it was recorded

Transport errors recorded mid-body (a stream cut off) are replayed as the same httpx2 errors.
"""

from runtime.cassette.entry import Exchange
from runtime.cassette.errors import (
    CassetteError,
    CassetteFormatError,
    ReplayExhausted,
    ReplayMismatch,
)
from runtime.cassette.normalise import first_difference, normalise_request, request_key
from runtime.cassette.record import RecordingTransport
from runtime.cassette.replay import ReplayTransport, load_cassette

__all__ = [
    "CassetteError",
    "CassetteFormatError",
    "Exchange",
    "RecordingTransport",
    "ReplayExhausted",
    "ReplayMismatch",
    "ReplayTransport",
    "first_difference",
    "load_cassette",
    "normalise_request",
    "request_key",
]
