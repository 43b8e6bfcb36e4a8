"""Spotify's hours-long quota pause survives a restart (real processes, a real SQLite file).

A `nowplaying serve` process and a `nowplaying simulator` process on loopback: the simulator
answers one currently-playing call with ``429 QUOTA_EXCEEDED`` and a Retry-After of an hour;
the server is stopped with SIGTERM and started again on the same database; the restarted server
makes no call to Spotify, says why, and tells viewers when to come back.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from harness.sim_server import HOUR, login_and_publish, server_and_simulator, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def upstream_calls(http: httpx.AsyncClient, sim_url: str) -> int:
    counts: dict[str, int] = (await http.get(f"{sim_url}/_control/calls")).json()
    return counts.get("currently-playing", 0)


async def test_quota_pause_spans_a_restart(tmp_path: Path) -> None:
    """After QUOTA_EXCEEDED and a restart: 0 calls to Spotify, viewers told to wait ~1 h."""
    async with (
        server_and_simulator(tmp_path) as (server, sim_url),
        httpx.AsyncClient(timeout=15) as http,
    ):
        await server.start(http)
        public_id = await login_and_publish(http, server)
        live = await http.get(f"{server.url}/p/{public_id}.json")
        assert live.status_code == 200 and live.json()["isPlaying"] is True

        fault = {
            "endpoint": "currently-playing",
            "status": 429,
            "retry_after": HOUR,
            "reason": "QUOTA_EXCEEDED",
            "times": 50,
        }
        assert (await http.post(f"{sim_url}/_control/faults", json=fault)).status_code == 201
        before = await upstream_calls(http, sim_url)

        async def locked_out() -> bool:
            return (await upstream_calls(http, sim_url)) > before

        await wait_for(locked_out, 20, "the poller meets the 429")  # the next 2-5 s poll

        # The simulator counts the call as it answers it; the server then stores the pause and
        # only then tells viewers, so the JSON turns stale a moment later (on a loaded machine,
        # after the first request here had its answer).
        async def stale() -> bool:
            return (await http.get(f"{server.url}/p/{public_id}.json")).json().get("stale") is True

        await wait_for(stale, 10, "the JSON says stale")

        assert server.terminate() == 0
        calls_at_stop = await upstream_calls(http, sim_url)
        await server.start(http)
        # The restarted server is asked, and watched, for a while: a server that forgot the pause
        # polls at once (its first poll is immediate), so one request already shows it.
        answers = [await http.get(f"{server.url}/p/{public_id}.json") for _ in range(5)]
        card = await http.get(f"{server.url}/p/{public_id}.svg")
        assert await upstream_calls(http, sim_url) == calls_at_stop
        assert all(a.status_code == 503 for a in answers), [a.text for a in answers]
        retry = int(answers[-1].headers["retry-after"])
        assert HOUR - 120 <= retry <= HOUR
        assert card.status_code == 200 and card.headers["content-type"].startswith("image/svg")
        assert server.terminate() == 0
        log = server.log.read_text()
        assert "QUOTA_EXCEEDED" in log and "no calls" in log
