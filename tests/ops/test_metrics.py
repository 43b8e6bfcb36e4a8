"""``/metrics``: Prometheus text, read back with ``prometheus_client``'s own parser, whose counters
agree with what the simulated Spotify counted on its side; not served without the token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from harness.app import Env, open_env
from harness.sse import SSEReader
from prometheus_client.parser import text_string_to_metric_families

from nowplaying.clock import FakeClock

pytestmark = pytest.mark.anyio
TOKEN = "scrape-token-for-tests-0123456789"
SCRAPE = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def menv(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Env]:
    async with open_env(tmp_path, clock, nowplaying_metrics_token=TOKEN) as e:
        response = await e.connect()
        assert response.status_code == 303, response.text
        yield e


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(env: Env) -> Samples:
    response = await env.client.get("/metrics", headers=SCRAPE)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def cookie(env: Env) -> dict[str, str]:
    return {"cookie": f"__Host-np_session={env.client.cookies.get('__Host-np_session')}"}


async def test_counters_match_the_simulators_counts(menv: Env) -> None:
    """Upstream calls by endpoint and status, token refreshes, rate-limit pauses and polls, as
    Spotify (the simulator) counted them; the SSE viewer gauge follows an open stream."""
    env = menv
    env.sim.player("demo").play(0)
    async with SSEReader(env.app, "/api/spotify/events", cookie(env)) as sse:
        await sse.wait_for(1)
        await env.clock.advance(20, step=1)
        assert total(await scrape(env), "nowplaying_sse_viewers") == 1
        env.sim.faults.add("currently-playing", status=429, retry_after=30)
        await env.clock.advance(60, step=1)
        await env.clock.advance(3600, step=10)  # past the access token's hour: one refresh
    for _ in range(3):
        assert (await env.client.get("/api/spotify")).status_code == 200
    samples = await scrape(env)
    calls = env.sim.calls
    for endpoint in ("token", "me", "currently-playing"):
        counted = total(samples, "nowplaying_upstream_requests_total", endpoint=endpoint)
        assert counted == calls[endpoint] > 0, endpoint
    upstream = "nowplaying_upstream_requests_total"
    assert total(samples, upstream, endpoint="currently-playing", status="429") == 1
    assert total(samples, upstream, endpoint="currently-playing", status="200") >= 10
    assert calls["token:refresh_token"] >= 1
    assert total(samples, "nowplaying_token_refreshes_total") == calls["token:refresh_token"]
    assert total(samples, "nowplaying_rate_limit_pauses_total") == 1
    polls = env.services.runtime.hub.counts["polls"]
    assert total(samples, "nowplaying_polls_total") == polls == calls["currently-playing"]
    assert total(samples, "nowplaying_sse_viewers") == 0
    assert total(samples, "nowplaying_paused") == 0
    assert total(samples, "nowplaying_poll_lag_seconds") >= 0
    latency = "nowplaying_http_request_duration_seconds_count"
    assert total(samples, latency, route="/api/spotify", status="200") == 3
    assert total(samples, latency, route="/api/spotify/events", status="200") == 1


async def test_a_pause_in_force_reads_as_paused(menv: Env) -> None:
    """While Spotify's Retry-After runs, ``nowplaying_paused`` is 1."""
    env = menv
    env.sim.faults.add("currently-playing", status=429, retry_after=600)
    assert (await env.client.get("/api/spotify")).status_code in (200, 503)
    await env.clock.advance(2, step=1)
    assert total(await scrape(env), "nowplaying_paused") == 1


async def test_metrics_need_the_bearer_token(menv: Env) -> None:
    """No token, another scheme or a wrong token: a 401 with a message, and no metrics."""
    for headers in ({}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer nope"}):
        response = await menv.client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"] == "unauthorized"
        assert "nowplaying_" not in response.text
    text = (await menv.client.get("/metrics", headers=SCRAPE)).text
    assert TOKEN not in text
    assert "csecret-for-tests" not in text


async def test_metrics_are_off_without_a_token(tmp_path: Path, clock: FakeClock) -> None:
    """With ``NOWPLAYING_METRICS_TOKEN`` unset, ``/metrics`` does not exist."""
    async with open_env(tmp_path, clock) as env:
        response = await env.client.get("/metrics", headers={"Authorization": "Bearer "})
        assert response.status_code == 404


async def test_metrics_answer_any_host(menv: Env) -> None:
    """Prometheus scrapes by address: ``/metrics`` (like ``/healthz``) ignores ``Host``."""
    response = await menv.client.get("/metrics", headers={**SCRAPE, "Host": "10.1.2.3:8000"})
    assert response.status_code == 200
    assert (await menv.client.get("/", headers={"Host": "10.1.2.3:8000"})).status_code == 400
