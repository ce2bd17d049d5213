"""The completions client: how every NPC thinks, against any OpenAI-compatible endpoint.

Usage (the runtime's turn loop)::

    client = CompletionsClient.from_env(base_url, api_key_env="OPENAI_API_KEY", model="gpt-4o")
    async with client.stream({"messages": messages, "tools": tools}) as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                forward_speech(event.text)
            elif isinstance(event, ToolCallFinished):
                ...
    choice = stream.completion.choice      # content, refusal, tool_calls, finish_reason
    history.append(choice.to_message())

Layers: :mod:`._sse` (sans-I/O SSE decoder) -> :mod:`._assembly` (sans-I/O chunk assembler,
every provider quirk) -> :mod:`.client` (retries, deadlines, concurrency, error mapping) over
one of two HTTP paths: :mod:`._http` (a lean asyncio-Protocol HTTP/1.1 client with a keep-alive
pool, the default for http(s) URLs) or an ``httpx2.AsyncClient`` (when one is passed as
``http=``, when ``HTTP(S)_PROXY``/``ALL_PROXY`` is set, or with ``NPC_HTTP_CLIENT=httpx2``).

Exceptions (all carry ``.retryable``; API keys never appear in them)::

    CompletionsError
    ├── ProviderError(message, code, type)       `event: error` / `error` object after HTTP 200
    ├── HTTPStatusError(status, body, headers)
    │   ├── BadRequest (400, 422)  Unauthorized (401, 403)  NotFound (404)   not retried
    │   └── RateLimited (429)  ServerError (5xx)                             retried
    ├── ConnectError                                                         retried
    ├── TimeoutError(phase: connect | read | write | pool | total)
    └── StreamProtocolError                      non-JSON data line, impossible chunk shape
        └── StreamTruncated                      body ended before the completion; retried
"""

from ._assembly import StreamAssembler, events_from_completion, parse_completion
from ._policy import RetryPolicy, Timeouts, parse_retry_after
from ._sse import SSEDecoder, SSEEvent
from .client import DEFAULT_BASE_URL, CompletionsClient, CompletionStream, endpoint_url
from .errors import (
    BadRequest,
    CompletionsError,
    ConnectError,
    HTTPStatusError,
    NotFound,
    ProviderError,
    RateLimited,
    ServerError,
    StreamProtocolError,
    StreamTruncated,
    TimeoutError,
    Unauthorized,
)
from .types import (
    Choice,
    ChoiceFinished,
    Completion,
    ReasoningDelta,
    RefusalDelta,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallArgumentsDelta,
    ToolCallFinished,
    ToolCallStarted,
    Usage,
    UsageReported,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "BadRequest",
    "Choice",
    "ChoiceFinished",
    "Completion",
    "CompletionStream",
    "CompletionsClient",
    "CompletionsError",
    "ConnectError",
    "HTTPStatusError",
    "NotFound",
    "ProviderError",
    "RateLimited",
    "ReasoningDelta",
    "RefusalDelta",
    "RetryPolicy",
    "SSEDecoder",
    "SSEEvent",
    "ServerError",
    "StreamAssembler",
    "StreamEvent",
    "StreamProtocolError",
    "StreamTruncated",
    "TextDelta",
    "TimeoutError",
    "Timeouts",
    "ToolCall",
    "ToolCallArgumentsDelta",
    "ToolCallFinished",
    "ToolCallStarted",
    "Unauthorized",
    "Usage",
    "UsageReported",
    "endpoint_url",
    "events_from_completion",
    "parse_completion",
    "parse_retry_after",
]
