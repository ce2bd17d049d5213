"""``npc complete``: send one chat-completions request to an endpoint and print what the
completions client assembled. For checking a provider/base URL/key before running NPCs on it,
and for tests (the output has the shape of ``shared/vectors/openai-recorded/expected.json``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from runtime.completions import (
    CompletionsClient,
    CompletionsError,
    HTTPStatusError,
    ProviderError,
    RetryPolicy,
    Timeouts,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "complete",
        help="send one chat-completions request and print the assembled answer as JSON",
        description=(
            "POST a request body (messages, tools, ...) to {base_url}/chat/completions, stream "
            "the answer (unless --no-stream) and print {model, choices: [{index, finish_reason, "
            "content, refusal, tool_calls: [{id, name, arguments}]}], usage} on stdout. "
            "Errors go to stderr (never the key) with exit code 1."
        ),
    )
    parser.add_argument(
        "--base-url",
        help="e.g. https://api.openai.com/v1, https://mdb.ai (default: $OPENAI_BASE_URL, "
        "else https://api.openai.com/v1)",
    )
    parser.add_argument("--model", help="model id (overrides the request file's `model`)")
    parser.add_argument("--request", required=True, help="JSON file holding the request body")
    parser.add_argument("--no-stream", action="store_true", help="send a non-streaming request")
    parser.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the API key (default: OPENAI_API_KEY)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="whole request, seconds")
    parser.add_argument("--max-retries", type=int, default=2)
    parser.set_defaults(func=run)


def _load_body(path: str) -> dict[str, Any] | str:
    try:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        return f"{path}: cannot read: {exc.strerror or exc}"
    except ValueError as exc:
        return f"{path}: not JSON: {exc}"
    if not isinstance(body, dict):
        return f"{path}: the request body must be a JSON object"
    if not isinstance(body.get("messages"), list):
        return f"{path}: field `messages` must be a list"
    return body


def run(args: argparse.Namespace) -> int:
    body = _load_body(args.request)
    if isinstance(body, str):
        print(f"npc complete: {body}", file=sys.stderr)
        return 2
    if args.model:
        body["model"] = args.model
    elif not isinstance(body.get("model"), str):
        print("npc complete: give --model or a `model` in the request file", file=sys.stderr)
        return 2
    try:
        client = CompletionsClient.from_env(
            args.base_url,
            api_key=os.environ.get(args.api_key_env) or None,
            timeouts=Timeouts(total=args.timeout),
            retry=RetryPolicy(max_retries=max(0, args.max_retries)),
            max_concurrency=1,
        )
    except ValueError as exc:
        print(f"npc complete: {exc}", file=sys.stderr)
        return 2
    try:
        completion = asyncio.run(_complete(client, body, stream=not args.no_stream))
    except CompletionsError as exc:
        print(f"npc complete: {type(exc).__name__}: {exc}", file=sys.stderr)
        if isinstance(exc, HTTPStatusError) and exc.body and exc.message is None:
            print(exc.body[:2000], file=sys.stderr)
        if isinstance(exc, ProviderError | HTTPStatusError) and exc.code is not None:
            print(f"code: {exc.code}", file=sys.stderr)
        return 1
    json.dump(completion.to_dict(), sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")
    return 0


async def _complete(client: CompletionsClient, body: dict[str, Any], *, stream: bool) -> Any:
    async with client:
        return await client.complete(body, stream=stream)
