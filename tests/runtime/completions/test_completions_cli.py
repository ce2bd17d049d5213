"""`npc complete` as a real subprocess against a loopback server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.completions.completions_server import Reply, ScriptedServer, sse_events

KEY = "sk-CLI-SECRET-abcdef0123456789"


async def npc(*args: str, env: dict[str, str] | None = None) -> tuple[int, Any, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runtime.cli", "complete", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, json.loads(out) if out.strip() else None, err.decode()


@pytest.mark.asyncio
async def test_streamed_tool_call_and_non_streamed_text(vectors: Path, tmp_path: Path) -> None:
    name = "f82268f2fefd.sse"
    expected = json.loads((vectors / "openai-recorded" / "expected.json").read_text())[name]
    request = tmp_path / "req.json"
    request.write_text(json.dumps({"messages": [{"role": "user", "content": "weather?"}]}))
    answer = {"id": "x", "model": "m", "choices": [{"index": 0, "finish_reason": "stop",
              "message": {"role": "assistant", "content": "Sunny."}}], "usage": None}  # fmt: skip
    replies = [
        Reply(chunks=sse_events((vectors / "openai-recorded" / name).read_bytes())),
        Reply(chunks=[json.dumps(answer).encode()], headers={"content-type": "application/json"}),
    ]
    async with ScriptedServer(replies) as server:
        env = {"MY_KEY": KEY}
        args = ("--base-url", server.base_url, "--model", "gpt-4o", "--request", str(request))
        code, out, err = await npc(*args, "--api-key-env", "MY_KEY", env=env)
        assert (code, err) == (0, "")
        assert out == expected
        code, out, _ = await npc(*args, "--no-stream", "--api-key-env", "MY_KEY", env=env)
    assert code == 0
    assert out == {
        "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "content": "Sunny.", "refusal": None,
                     "tool_calls": []}],
        "usage": None,
    }  # fmt: skip
    first, second = (json.loads(r.body) for r in server.requests)
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert (first["model"], first["stream"], second["stream"]) == ("gpt-4o", True, False)


@pytest.mark.asyncio
async def test_errors_go_to_stderr_without_the_key(vectors: Path, tmp_path: Path) -> None:
    request = tmp_path / "req.json"
    request.write_text(json.dumps({"model": "m", "messages": []}))
    groq = (vectors / "provider-recorded" / "groq-tool-use-failed-0.sse").read_bytes()
    unauthorized = json.dumps({"error": {"message": f"bad key {KEY}", "code": "invalid_api_key"}})
    replies = [
        Reply(chunks=sse_events(groq)),
        Reply(status=401, chunks=[unauthorized.encode()]),
    ]
    async with ScriptedServer(replies) as server:
        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}
        code, out, err = await npc("--request", str(request), env=env)
        assert (code, out) == (1, None)
        assert "ProviderError" in err
        assert "tool_use_failed" in err
        code, out, err2 = await npc("--request", str(request), env=env)
    assert (code, out) == (1, None)
    assert "Unauthorized: HTTP 401" in err2
    assert KEY not in err + err2


@pytest.mark.asyncio
async def test_bad_request_file_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = await npc("--base-url", "http://127.0.0.1:9/v1", "--request", str(bad))
    assert code == 2
    assert "not JSON" in err
    bad.write_text(json.dumps({"messages": []}))
    code, _, err = await npc("--base-url", "http://127.0.0.1:9/v1", "--request", str(bad))
    assert code == 2
    assert "--model" in err
