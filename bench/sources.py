"""Pull sources: Last.fm and ListenBrainz read for watched widgets, on real servers.

A fresh ``nowplaying serve`` in demo mode, whose simulated Last.fm and ListenBrainz (in-process)
are steered and counted through their control routes. Widgets are made the way owners make
them (signing in with Last.fm, or with a ListenBrainz token) and published; viewers follow
``/p/{id}/events`` over raw sockets (:class:`bench.fanout.Viewer`). Issue 20's figures:

- Last.fm "now playing" appears upstream -> the viewer: p95 against one read interval + 0.5 s
  (2.5 s at the default budget), one watched account;
- Last.fm calls a minute for that account, and for 50 watched accounts (the most in any second,
  sampled every 0.1 s): never above the budget (30 a minute an account, 4 a second for the app);
- ListenBrainz, 3 watched accounts: calls a second at the default 1/s; and on a second server
  whose rate (10/s) is above what the simulated ListenBrainz's headers allow (30 per 10 s),
  the calls made and the 429s met (the headers keep it within);
- Last.fm and ListenBrainz calls once nobody has watched for the watch TTL (60 s): 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from harness.helpers import ONE_ADDRESS_AUDIENCE
from harness.servers import nowplaying_server, sign_in_with_lastfm, sign_in_with_listenbrainz

from bench.fanout import Viewer, open_viewers, raise_nofile

CHANGES = 12
MANY = 50
LB_ACCOUNTS = 3
WINDOW_SECONDS = 30.0
WATCH_TTL = 60.0
FM = "/lastfm-sim/_control/lastfm"
LB = "/listenbrainz-sim/_control/listenbrainz"
ENV = {**ONE_ADDRESS_AUDIENCE, "NOWPLAYING_LOGIN_RATE_PER_MINUTE": "0"}
"""53 sign-ins from one address in a few seconds: the login rate limit off."""


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    missed: int = 0
    one_per_minute: float = 0.0
    many_per_minute: float = 0.0
    many_max_second: int = 0
    lb_per_second: float = 0.0
    lb_fast_calls: int = 0
    lb_fast_seconds: float = 0.0
    lb_fast_429: int = 0
    lb_fast_per_10s: int = 0
    idle_calls: int = -1

    def quantile(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def _calls(http: httpx.AsyncClient, prefix: str, name: str) -> int:
    counts = (await http.get(f"{prefix}/calls")).json()
    return int(counts.get(name, 0))


async def _publish(http: httpx.AsyncClient, cookie: str, origin: str) -> str:
    answer = await http.post("/api/account/publish", headers={"Cookie": cookie, "Origin": origin})
    answer.raise_for_status()
    return str(answer.json()["publicId"])


async def _lastfm_widgets(http: httpx.AsyncClient, origin: str, n: int) -> list[str]:
    """``n`` widgets made by signing in with Last.fm (users ``fm0``...), published: their ids."""
    ids = []
    for i in range(n):
        track = {"artist": "Bench", "name": f"Start {i}", "duration": 3600}  # makes the user
        (await http.post(f"{FM}/users/fm{i}/play", json=track)).raise_for_status()
        cookie = await sign_in_with_lastfm(origin, f"fm{i}")
        ids.append(await _publish(http, cookie, origin))
    return ids


async def _lb_widgets(http: httpx.AsyncClient, origin: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        token = f"bench-lb-token-{i}"
        (await http.post(f"{LB}/users/lb{i}", json={"token": token})).raise_for_status()
        cookie = await sign_in_with_listenbrainz(origin, token)
        ids.append(await _publish(http, cookie, origin))
    return ids


@contextlib.asynccontextmanager
async def _watching(port: int, ids: list[str]) -> AsyncIterator[list[Viewer]]:
    viewers: list[Viewer] = []
    try:
        for public_id in ids:
            live, _ = await open_viewers(port, f"/p/{public_id}/events", 1)
            viewers += live
        yield viewers
    finally:
        for v in viewers:
            v.close()


async def _seen(viewer: Viewer, title: str, within: float) -> float | None:
    """When ``viewer`` got an event naming ``title`` (time.time()), or None."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        viewer.arrived.clear()
        if json.loads(viewer.last_data or "{}").get("title") == title:
            return viewer.last_at
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(viewer.arrived.wait(), max(0.0, deadline - time.monotonic()))
    return None


async def _latency(http: httpx.AsyncClient, port: int, public_id: str, out: Result) -> None:
    """One watched account: tracks started upstream at random moments, each timed to the
    viewer; the calls it cost a minute."""
    async with _watching(port, [public_id]) as (viewer,):
        before, started = await _calls(http, FM, "user.getrecenttracks"), time.monotonic()
        for n in range(CHANGES):
            await asyncio.sleep(random.uniform(0.5, 3.0))
            title = f"Bench {n}"
            sent = time.time()
            track = {"artist": "Bench", "name": title, "duration": 300}
            (await http.post(f"{FM}/users/fm0/play", json=track)).raise_for_status()
            at = await _seen(viewer, title, 10.0)
            if at is None:
                out.missed += 1
            else:
                out.latencies.append(at - sent)
        made = await _calls(http, FM, "user.getrecenttracks") - before
        out.one_per_minute = made * 60 / (time.monotonic() - started)


@dataclass
class Sampled:
    """A call counter read every 0.1 s: (monotonic time, count) pairs."""

    points: list[tuple[float, int]]

    @property
    def per_second(self) -> float:
        (t0, c0), (t1, c1) = self.points[0], self.points[-1]
        return (c1 - c0) / (t1 - t0)

    def most_within(self, seconds: float) -> int:
        """The most calls counted between two readings at most ``seconds`` apart (a reading
        takes a moment, so this can only undercount by the calls of one reading's span)."""
        best = 0
        for i, (t0, c0) in enumerate(self.points):
            for t1, c1 in self.points[i + 1 :]:
                if t1 - t0 > seconds:
                    break
                best = max(best, c1 - c0)
        return best


async def _sampled(http: httpx.AsyncClient, prefix: str, name: str) -> Sampled:
    """The call counter every 0.1 s for :data:`WINDOW_SECONDS`."""
    points: list[tuple[float, int]] = []
    started = time.monotonic()
    while time.monotonic() - started < WINDOW_SECONDS:
        count = await _calls(http, prefix, name)
        points.append((time.monotonic(), count))
        await asyncio.sleep(0.1)
    return Sampled(points)


async def _many(http: httpx.AsyncClient, port: int, ids: list[str], out: Result) -> None:
    async with _watching(port, ids):
        await asyncio.sleep(3)  # every poller started
        sampled = await _sampled(http, FM, "user.getrecenttracks")
    out.many_per_minute = sampled.per_second * 60
    out.many_max_second = sampled.most_within(1.0)


async def _idle(http: httpx.AsyncClient, out: Result) -> None:
    """Nobody watches any more: after the watch TTL, count every pull call for 15 s."""
    await asyncio.sleep(WATCH_TTL + 5)
    fm, lb = await _calls(http, FM, "user.getrecenttracks"), await _calls(http, LB, "playing-now")
    await asyncio.sleep(15)
    later = await _calls(http, FM, "user.getrecenttracks") + await _calls(http, LB, "playing-now")
    out.idle_calls = later - fm - lb


async def _listenbrainz(http: httpx.AsyncClient, port: int, ids: list[str]) -> float:
    async with _watching(port, ids):
        await asyncio.sleep(3)
        sampled = await _sampled(http, LB, "playing-now")
    return sampled.per_second


async def _headers(out: Result) -> None:
    """A second server allowed 10 ListenBrainz calls a second, against 30 per 10 s allowed by
    the simulated ListenBrainz's headers."""
    env = {**ENV, "NOWPLAYING_LISTENBRAINZ_CALLS_PER_SECOND": "10"}
    with nowplaying_server(extra_env=env) as server:
        port = int(server.url.rsplit(":", 1)[1])
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            ids = await _lb_widgets(http, server.url, LB_ACCOUNTS)
            async with _watching(port, ids):
                await asyncio.sleep(3)
                refused = await _calls(http, LB, "rate_limited")
                sampled = await _sampled(http, LB, "playing-now")
                out.lb_fast_429 = await _calls(http, LB, "rate_limited") - refused
        (t0, c0), (t1, c1) = sampled.points[0], sampled.points[-1]
        out.lb_fast_calls, out.lb_fast_seconds = c1 - c0, t1 - t0
        out.lb_fast_per_10s = sampled.most_within(10.0)


async def run() -> Result:
    raise_nofile()
    out = Result()
    with nowplaying_server(extra_env=ENV) as server:
        port = int(server.url.rsplit(":", 1)[1])
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            ids = await _lastfm_widgets(http, server.url, MANY)
            lb_ids = await _lb_widgets(http, server.url, LB_ACCOUNTS)
            await _latency(http, port, ids[0], out)
            await _many(http, port, ids, out)
            out.lb_per_second = await _listenbrainz(http, port, lb_ids)
            await _idle(http, out)
    await _headers(out)
    return out


def lines(r: Result) -> list[str]:
    """The section's lines in the bench table."""
    p95 = r.quantile(0.95)
    return [
        "Pull sources (demo server, simulated Last.fm and ListenBrainz in-process):",
        f"  Last.fm now playing -> viewer, 1 watched account ({CHANGES} changes): p50"
        f" {r.quantile(0.5):.2f} s, p95 {p95:.2f} s (target <= 2.5 s: one 2 s read + 0.5 s:"
        f" {'met' if p95 <= 2.5 else 'NOT met'}), missed {r.missed}",
        f"  Last.fm calls/min, 1 watched account: {r.one_per_minute:.1f} (budget 30)",
        f"  Last.fm calls/min, {MANY} watched accounts: {r.many_per_minute:.1f} (budget 240);"
        f" most in any 1 s: {r.many_max_second} (budget 4)",
        f"  ListenBrainz calls/s, {LB_ACCOUNTS} watched accounts: {r.lb_per_second:.2f} (budget 1)",
        f"  ListenBrainz at 10/s against headers allowing 30 per 10 s: {r.lb_fast_calls} calls"
        f" in {r.lb_fast_seconds:.0f} s, most in any 10 s {r.lb_fast_per_10s} (allowed 30),"
        f" 429s {r.lb_fast_429}",
        f"  pull calls in 15 s once nobody watched for {WATCH_TTL:.0f} s: {r.idle_calls}"
        " (target 0)",
        "",
    ]
