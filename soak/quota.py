"""The hour-long rate limit, as its own short phase before the chaos.

A 429 with ``Retry-After: 3600`` (reason ``QUOTA_EXCEEDED``) pauses every account's polling for
an hour, and the server is right to honour it; a 150 s soak cannot wait that out. So: one such
429 is injected (``times: 1``), the phase checks that every viewer is told its data is stale and
that no upstream call at all is made for :data:`WINDOW` seconds, then restarts the server process
(the pause lives in memory only) and checks every account comes back live.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .viewers import SseViewer, Tally, Target, nap, until, watch

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
    live_after_restart: float | None = None

    @property
    def ok(self) -> bool:
        return (
            self.stale_after is not None
            and self.sse_stale == self.sse_viewers > 0
            and not any(self.upstream_during_pause.values())
            and self.probes_stale == self.probes > 0
            and not self.fault_left
            and self.live_after_restart is not None
        )

    def detail(self) -> str:
        calls = sum(self.upstream_during_pause.values())
        stale = f"{self.stale_after:.1f} s" if self.stale_after is not None else "never"
        back = (
            f"{self.live_after_restart:.1f} s"
            if self.live_after_restart is not None
            else "not within 20 s"
        )
        return (
            f"every account stale {stale} after the 429; {self.sse_stale}/{self.sse_viewers} SSE"
            f" viewers got `stale: true`; {self.probes_stale}/{self.probes} `/api/spotify` answers"
            f" in the {WINDOW:g} s window were 200 + stale; {calls} upstream calls in that window"
            f" ({self._calls()}); after a server restart every account live again in {back}"
        )

    def _calls(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.upstream_during_pause.items()) or "none"


async def _states(
    http: httpx.AsyncClient, base: str, cookies: dict[str, str]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for cookie in cookies.values():
        r = await http.get(f"{base}/api/spotify", headers={"Cookie": cookie}, timeout=10)
        out.append(r.json() if r.status_code == 200 else {"status": r.status_code})
    return out


async def quota_pause(
    http: httpx.AsyncClient,
    base: str,
    sim_url: str,
    cookies: dict[str, str],
    restart: Callable[[], Awaitable[None]],
) -> QuotaResult:
    """Run the phase; the server is restarted on the way out, whatever happened."""
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
        before = (await http.get(f"{sim_url}/_control/calls")).json()
        started = time.monotonic()
        while time.monotonic() - started < WINDOW:
            for state in await _states(http, base, cookies):
                res.probes += 1
                res.probes_stale += bool(state.get("stale"))
            await nap(stop, 1.0)
        after = (await http.get(f"{sim_url}/_control/calls")).json()
        res.upstream_during_pause = {
            k: after.get(k, 0) - before.get(k, 0)
            for k in UPSTREAM
            if after.get(k, 0) != before.get(k, 0)
        }
        res.sse_stale = sum(1 for v in viewers if v.last and v.last.get("stale"))
        res.fault_left = bool((await http.get(f"{sim_url}/_control/faults")).json())
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await http.delete(f"{sim_url}/_control/faults")
        await restart()
    res.live_after_restart = await until(all_live, 20)
    return res
