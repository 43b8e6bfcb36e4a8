"""The latency of every request: counted once per request and route, and not observed while
/metrics is off."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.app import Env, open_env

from nowplaying.clock import FakeClock

pytestmark = pytest.mark.anyio


async def test_latency_is_counted_once_per_request_per_route(
    tmp_path: Path, clock: FakeClock
) -> None:
    """With /metrics on, the kept histogram children count every request (a lower and an upper
    bound)."""
    async with open_env(tmp_path, clock, nowplaying_metrics_token="t" * 32) as env:
        assert (await env.connect()).status_code == 303
        before = _count(env, "/api/spotify")
        for _ in range(5):
            assert (await env.client.get("/api/spotify")).status_code == 200
        assert _count(env, "/api/spotify") == before + 5


async def test_latency_is_not_observed_while_metrics_are_off(connected: Env) -> None:
    """Nobody can scrape the histogram without a token: the edge does not fill it."""
    for _ in range(3):
        assert (await connected.client.get("/api/spotify")).status_code == 200
    assert _count(connected, "/api/spotify") == 0
    assert (await connected.client.get("/metrics")).status_code == 404


def _count(env: Env, route: str) -> float:
    registry = env.services.metrics.registry
    value = registry.get_sample_value(
        "nowplaying_http_request_duration_seconds_count",
        {"route": route, "method": "GET", "status": "200"},
    )
    return value or 0.0
