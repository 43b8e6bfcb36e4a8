"""Push to viewers: 1,000 SSE viewers of one public link, a player pushing what plays.

A fresh ``nowplaying serve`` (demo mode) is signed in and published; ``VIEWERS`` raw-socket
viewers (:class:`bench.fanout.Viewer`) follow ``/p/{id}/events``. ``PUSHES`` times, a new track
is submitted to ``POST /1/submit-listens`` (``playing_now``, the widget's push token) as a player
would; a viewer's latency is its arrival of the new event minus the moment just before the
submission was sent (the whole path: the request, the engine, the fan-out). Issue 20's target:
p95 <= 0.25 s. The simulated Spotify's call count over the pushes shows they cost no upstream
call (its own poller goes on polling meanwhile, so the count may move by those polls only).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import httpx
from harness.helpers import ONE_ADDRESS_AUDIENCE
from harness.servers import nowplaying_server, sign_in

from bench.fanout import Change, Viewer, open_viewers, raise_nofile

VIEWERS = 1000
PUSHES = 10
PUSH_SECONDS = 10.0


@dataclass
class Result:
    viewers: int
    latencies: list[float] = field(default_factory=list)
    missed: int = 0

    def quantile(self, q: float) -> float:
        return Change(0.0, self.latencies, 0, 0.0, 0).quantile(q)


async def _push(http: httpx.AsyncClient, token: str, n: int, viewers: list[Viewer]) -> Result:
    before = {id(v): v.last_id for v in viewers}
    body = {
        "listen_type": "playing_now",
        "payload": [{"track_metadata": {"artist_name": "Bench", "track_name": f"Push {n}"}}],
    }
    for v in viewers:
        v.arrived.clear()
    sent = time.time()
    answer = await http.post(
        "/1/submit-listens", json=body, headers={"Authorization": f"Token {token}"}
    )
    answer.raise_for_status()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(v.arrived.wait() for v in viewers)), PUSH_SECONDS)
    got = [v for v in viewers if v.last_id != before[id(v)]]
    return Result(len(viewers), [v.last_at - sent for v in got], len(viewers) - len(got))


async def run(viewers: int = VIEWERS) -> Result:
    raise_nofile()
    with nowplaying_server(extra_env=ONE_ADDRESS_AUDIENCE) as server:
        cookie = await sign_in(server.url)
        headers = {"Cookie": cookie, "Origin": server.url}
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            account = (await http.post("/api/account/publish", headers=headers)).json()
            token = (await http.get("/api/account", headers=headers)).json()["pushToken"]
            path = f"/p/{account['publicId']}/events"
            (await http.get(path.removesuffix("/events") + ".json")).raise_for_status()
            port = int(server.url.rsplit(":", 1)[1])
            live, _ = await open_viewers(port, path, viewers)
            total = Result(len(live))
            try:
                for n in range(PUSHES):
                    await asyncio.sleep(0.5)
                    one = await _push(http, token, n, live)
                    total.latencies += one.latencies
                    total.missed += one.missed
            finally:
                for v in live:
                    v.close()
    return total


def lines(result: Result) -> list[str]:
    """The section's lines in the bench table."""
    worst = max(result.latencies, default=float("nan"))
    p95 = result.quantile(0.95)
    return [
        f"push -> {result.viewers} SSE viewers ({PUSHES} pushes to /1/submit-listens):",
        f"  submitted -> viewer p50 {result.quantile(0.5):.3f} s, p95 {p95:.3f} s"
        f" (target <= 0.25 s: {'met' if p95 <= 0.25 else 'NOT met'}), max {worst:.3f} s,"
        f" missed {result.missed}",
        "",
    ]
