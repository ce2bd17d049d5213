"""Which HTTP path the Runtime gives each kind of model endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.completions import CompletionsClient
from runtime.offline import OfflineModel, offline_characters, running_offline_model
from runtime.project import load_project
from runtime.runtime import Runtime

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "village"


@pytest.mark.asyncio
async def test_a_real_endpoint_uses_the_native_http_path_and_a_turn_completes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NPC_HTTP_CLIENT"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    project = load_project(SAMPLE)
    app = OfflineModel(offline_characters(project))
    # A URL, not "offline": the runtime names the model as npc.toml says ("offline"), which
    # the offline app answers with its schema-driven policy.
    async with (
        running_offline_model(app, "127.0.0.1", 0) as base_url,
        Runtime(project, base_url=base_url, environ={}) as runtime,
    ):
        session = await runtime.spawn("g1", "guard", start=False)
        client = runtime.client_for(base_url)
        assert isinstance(client, CompletionsClient)
        assert client.backend == "native"
        result = await session.run_turn('player says: "hello"')
    assert result.outcome == "done"
    assert result.steps >= 1


@pytest.mark.asyncio
async def test_offline_and_recording_go_through_an_injected_transport(tmp_path: Path) -> None:
    project = load_project(SAMPLE)
    async with Runtime(project, environ={}) as runtime:
        client = runtime.client_for("offline")
        assert isinstance(client, CompletionsClient)
        assert client.backend == "httpx2"
    cassette = tmp_path / "run.jsonl"
    async with Runtime(project, record=str(cassette), environ={}) as runtime:
        session = await runtime.spawn("g1", "guard", start=False)
        result = await session.run_turn('player says: "oak"')
        assert result.outcome == "done"
    assert cassette.read_text("utf-8").count("\n") == 2
