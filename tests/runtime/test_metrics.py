"""The runtime's counters, as a scraper reads them from `GET /metrics`."""

from __future__ import annotations

import httpx2
import pytest

from runtime.endpoint import create_app
from runtime.metrics import Metrics
from runtime.project import load_project
from runtime.runtime import Runtime


def test_render_counts_turns_tokens_and_latencies() -> None:
    metrics = Metrics()
    metrics.observe_turn(
        "done",
        tool_calls=2,
        prompt_tokens=100,
        completion_tokens=10,
        model_ms=250.0,
        first_speech_ms=50.0,
        tool_ms=30.0,
    )
    metrics.observe_turn(
        "failed",
        tool_calls=0,
        prompt_tokens=5,
        completion_tokens=0,
        model_ms=10.0,
        first_speech_ms=None,
        tool_ms=0.0,
    )
    text = metrics.render()
    assert 'npc_turns_total{outcome="done"} 1' in text
    assert 'npc_turns_total{outcome="failed"} 1' in text
    assert "npc_tool_calls_total 2" in text
    assert 'npc_tokens_total{kind="prompt"} 105' in text
    assert "npc_model_seconds_count 2" in text
    assert "npc_model_seconds_sum 0.260000" in text
    assert "npc_first_speech_seconds_count 1" in text
    assert "npc_tool_seconds_count 1" in text


@pytest.mark.asyncio
async def test_metrics_endpoint_reflects_turns_of_runtime_sessions() -> None:
    project = load_project("samples/village")
    async with Runtime(project) as runtime:
        session = await runtime.spawn("g1", "guard", start=False)
        result = await session.run_turn('player says: "oak"')
        assert result.outcome == "done"
        app = create_app(project, runtime, environ={})
        transport = httpx2.ASGITransport(app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'npc_turns_total{outcome="done"} 1' in response.text
    assert "npc_tool_calls_total 1" in response.text
    assert "npc_sessions 1" in response.text
