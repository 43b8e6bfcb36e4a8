"""The hour-long rate limit, as its own short phase before the chaos.

A 429 with ``Retry-After: 3600`` (reason ``QUOTA_EXCEEDED``) pauses every account's polling for
an hour, and the server is right to honour it; a 150 s soak cannot wait that out. So: one such
429 is injected (``times: 1``), the phase checks that every viewer is told its data is stale and
that no upstream call at all is made for :data:`WINDOW` seconds; then it restarts the server
process, and the pause must survive that (polling on through the quota is reported to extend
it): still stale, still no upstream call for another :data:`WINDOW` seconds. A restart that
clears the pause is a failure. Then the soak ends the pause as an operator would once Spotify
lifted it (server stopped, the stored pause replaced by one that has passed, server started)
and checks every account comes back live, so the chaos can run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from soak.viewers import SseViewer, Tally, Target, until, watch

WINDOW = 8.0
UPSTREAM = ("currently-playing", "recently-played", "me", "player", "token")


@dataclass
class QuotaResult:
    live_before: float | None = None
    stale_after: float | None = None
    sse_stale: int = 0
    sse_viewers: int = 0
    upstream_during_pause: dict[str, int] = field(default_factory=dict)
    probes: int = 0
    probes_stale: int = 0
    fault_left: bool = False
    after_restart: Window | None = None
    live_after_clear: float | None = None

    @property
    def ok(self) -> bool:
        return (
            self.stale_after is not None
            and self.sse_stale == self.sse_viewers > 0
            and not any(self.upstream_during_pause.values())
            and self.probes_stale == self.probes > 0
            and not self.fault_left
            and self.after_restart is not None
            and self.after_restart.paused
            and self.live_after_clear is not None
        )

    def detail(self) -> str:
        calls = sum(self.upstream_during_pause.values())
        stale = f"{self.stale_after:.1f} s" if self.stale_after is not None else "never"
        back = (
            f"{self.live_after_clear:.1f} s"
            if self.live_after_clear is not None
            else "not within 20 s"
        )
        w = self.after_restart or Window()
        return (
            f"every account stale {stale} after the 429; {self.sse_stale}/{self.sse_viewers} SSE"
            f" viewers got `stale: true`; {self.probes_stale}/{self.probes} `/api/spotify` answers"
            f" in the {WINDOW:g} s window were 200 + stale; {calls} upstream calls in that window"
            f" ({_calls(self.upstream_during_pause)}); after a server restart (the pause must"
            f" survive it) {sum(w.calls.values())} upstream calls ({_calls(w.calls)}) in"
            f" {WINDOW:g} s, and of {w.probes} answers {w.stale} were 200 + stale and {w.unknown}"
            f" the 503 + Retry-After of a server with no last state to show; once the stored pause"
            f" is ended, every account live again in {back}"
        )


def _calls(calls: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in calls.items()) or "none"


@dataclass
class Window:
    """What :data:`WINDOW` seconds of probing every account saw."""

    probes: int = 0
    stale: int = 0
    """200 answers with ``stale: true``."""
    unknown: int = 0
    """The designed 503 + Retry-After: the server has nothing to show at all (restarted with no
    shared state, and not allowed to ask Spotify)."""
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def paused(self) -> bool:
        return (
            self.probes > 0
            and self.stale + self.unknown == self.probes
            and not any(self.calls.values())
        )


async def _window(
    http: httpx.AsyncClient, base: str, sim_url: str, cookies: dict[str, str]
) -> Window:
    """Probe every account for WINDOW seconds, and count upstream calls meanwhile."""
    w = Window()
    before = (await http.get(f"{sim_url}/_control/calls")).json()
    started = time.monotonic()
    while time.monotonic() - started < WINDOW:
        for state in await _states(http, base, cookies):
            w.probes += 1
            w.stale += bool(state.get("stale"))
            w.unknown += state.get("status") == 503 and bool(state.get("retry"))
        await asyncio.sleep(1.0)
    after = (await http.get(f"{sim_url}/_control/calls")).json()
    w.calls = {
        k: after.get(k, 0) - before.get(k, 0)
        for k in UPSTREAM
        if after.get(k, 0) != before.get(k, 0)
    }
    return w


async def _states(
    http: httpx.AsyncClient, base: str, cookies: dict[str, str]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for cookie in cookies.values():
        r = await http.get(f"{base}/api/spotify", headers={"Cookie": cookie}, timeout=10)
        if r.status_code == 200:
            out.append(r.json())
        else:
            out.append({"status": r.status_code, "retry": r.headers.get("retry-after")})
    return out


async def quota_pause(
    http: httpx.AsyncClient,
    base: str,
    sim_url: str,
    cookies: dict[str, str],
    *,
    restart: Callable[[], Awaitable[None]],
    end_pause: Callable[[], Awaitable[None]],
) -> QuotaResult:
    """Run the phase. ``restart()`` restarts the server; ``end_pause()`` restarts it with the
    stored pause ended. The pause is ended on the way out, whatever happened."""
    res = QuotaResult()
    tally, stop = Tally(), asyncio.Event()
    viewers = [
        SseViewer(Target(user, "sse-private", "/api/spotify/events", cookie))
        for user, cookie in cookies.items()
    ]
    res.sse_viewers = len(viewers)
    tasks = [asyncio.create_task(watch(http, base, v, tally, stop)) for v in viewers]

    async def all_live() -> bool:
        states = await _states(http, base, cookies)
        return all("isPlaying" in s and not s.get("stale") for s in states)

    async def all_stale() -> bool:
        return all(s.get("stale") for s in await _states(http, base, cookies))

    try:
        res.live_before = await until(all_live, 20)
        await http.post(
            f"{sim_url}/_control/faults",
            json={
                "endpoint": "currently-playing",
                "status": 429,
                "retry_after": 3600,
                "reason": "QUOTA_EXCEEDED",
                "times": 1,
            },
        )
        res.stale_after = await until(all_stale, 15)
        await asyncio.sleep(1)  # let an in-flight poll of another account land first
        first = await _window(http, base, sim_url, cookies)
        res.probes, res.probes_stale, res.upstream_during_pause = (
            first.probes,
            first.stale,
            first.calls,
        )
        res.sse_stale = sum(1 for v in viewers if v.last and v.last.get("stale"))
        res.fault_left = bool((await http.get(f"{sim_url}/_control/faults")).json())
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await restart()
        res.after_restart = await _window(http, base, sim_url, cookies)
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await http.delete(f"{sim_url}/_control/faults")
        await end_pause()
    res.live_after_clear = await until(all_live, 20)
    return res
