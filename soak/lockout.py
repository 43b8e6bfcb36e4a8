"""Spotify's development-mode quota lockout, across restarts of every instance.

One ``429 {"error": {"reason": "QUOTA_EXCEEDED"}}`` with ``Retry-After: 3600`` is injected. The
app must pause every upstream call for that hour, durably: through a rolling restart of each
instance (viewers attached), and then through a full stop and start of the cluster, in which no
process that saw the 429 survives. The phase counts upstream calls at the simulator from the
moment every account reads stale (target 0), checks every viewer is told ``stale: true`` and that
each instance's owner page says "Spotify paused this app until HH:MM". It cannot wait an hour,
so the soak ends here: the pause outlives the phase, as it must.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from soak.cluster import INSTANCES, Cluster
from soak.quota import UPSTREAM

RETRY_AFTER = 3600
PROBE_SECONDS = 6.0


@dataclass
class Lockout:
    injected_at: float = 0.0
    injected_at_epoch: float = 0.0
    stale_after: float | None = None
    """Seconds from the 429 until every account read stale through the balancer."""
    quiet_from: float = 0.0
    calls_to_stale: dict[str, int] = field(default_factory=dict)
    """Upstream calls between the 429 and every account reading stale (in-flight polls)."""
    calls_rolling: dict[str, int] = field(default_factory=dict)
    calls_full_restart: dict[str, int] = field(default_factory=dict)
    probes: int = 0
    probes_stale: int = 0
    owner_notes: dict[int, str] = field(default_factory=dict)
    """Instance -> what its owner API / page said about the pause (after the full restart)."""
    paused_until_ok: int = 0
    full_restart_exits: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def upstream(self) -> int:
        return sum(self.calls_rolling.values()) + sum(self.calls_full_restart.values())


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        k: after.get(k, 0) - before.get(k, 0)
        for k in UPSTREAM
        if after.get(k, 0) != before.get(k, 0)
    }


async def _calls(http: httpx.AsyncClient, c: Cluster) -> dict[str, int]:
    calls: dict[str, int] = (await http.get(f"{c.sim_url}/_control/calls")).json()
    return calls


async def _all_stale(http: httpx.AsyncClient, c: Cluster, cookies: dict[str, str]) -> bool:
    for cookie in cookies.values():
        r = await http.get(f"{c.origin}/api/spotify", headers={"Cookie": cookie}, timeout=5)
        if r.status_code != 200 or not r.json().get("stale"):
            return False
    return True


async def _probe(
    http: httpx.AsyncClient, c: Cluster, cookies: dict[str, str], res: Lockout
) -> None:
    """Every account on every instance, directly, for PROBE_SECONDS: each answer must be stale."""
    started = time.monotonic()
    while time.monotonic() - started < PROBE_SECONDS:
        for i in range(INSTANCES):
            for cookie in cookies.values():
                headers = {"Host": c.host, "Cookie": cookie}
                res.probes += 1
                try:
                    r = await http.get(f"{c.url(i)}/api/spotify", headers=headers, timeout=5)
                    res.probes_stale += r.status_code == 200 and bool(r.json().get("stale"))
                except (httpx.HTTPError, ValueError):
                    pass
        await asyncio.sleep(1.0)


async def _owner(http: httpx.AsyncClient, c: Cluster, cookie: str, res: Lockout) -> None:
    """What each instance tells the owner: ``/api/account`` and the owner page."""
    for i in range(INSTANCES):
        headers = {"Host": c.host, "Cookie": cookie, "Origin": c.origin}
        try:
            api: dict[str, Any] = (
                await http.get(f"{c.url(i)}/api/account", headers=headers, timeout=5)
            ).json()
            page = (await http.get(f"{c.url(i)}/", headers=headers, timeout=5)).text
        except (httpx.HTTPError, ValueError) as e:
            res.owner_notes[i] = type(e).__name__
            continue
        until = (api.get("pausedUntil") or 0) / 1000
        expected = res.injected_at_epoch + RETRY_AFTER
        if api.get("pauseReason") == "QUOTA_EXCEEDED" and abs(until - expected) < 120:
            res.paused_until_ok += 1
        start = page.find("Spotify paused this app until")
        note = page[start : start + 60] if start >= 0 else "no pause note on the owner page"
        res.owner_notes[i] = f"{api.get('pauseReason')}; {note}"


async def lockout(
    http: httpx.AsyncClient,
    c: Cluster,
    cookies: dict[str, str],
    *,
    roll: Callable[[int, str], Awaitable[Any]],
    before_full_restart: Callable[[], Awaitable[None]],
    res: Lockout,
) -> None:
    """Run the phase, filling in ``res`` as it goes (so an aborted run still reports it).

    ``roll(i, label)`` restarts one instance with viewers attached; ``before_full_restart()``
    stops the viewers (nobody is served while every instance is down).
    """
    res.injected_at = time.monotonic()
    res.injected_at_epoch = time.time()
    before = await _calls(http, c)
    await http.post(
        f"{c.sim_url}/_control/faults",
        json={
            "endpoint": "currently-playing",
            "status": 429,
            "retry_after": RETRY_AFTER,
            "reason": "QUOTA_EXCEEDED",
            "times": 1,
        },
    )
    started = time.monotonic()
    while time.monotonic() - started < 15:
        try:
            if await _all_stale(http, c, cookies):
                res.stale_after = time.monotonic() - started
                break
        except (httpx.HTTPError, ValueError):
            pass
        await asyncio.sleep(0.25)
    if res.stale_after is None:
        res.error = "not every account read stale within 15 s of the 429"
    await asyncio.sleep(1.0)  # an in-flight poll of another account may still land
    quiet = await _calls(http, c)
    res.quiet_from = time.monotonic()
    res.calls_to_stale = _delta(before, quiet)
    for i in (1, 2, 0):
        await roll(i, "during the lockout")
        await asyncio.sleep(3.0)
    await _probe(http, c, cookies, res)
    rolled = await _calls(http, c)
    res.calls_rolling = _delta(quiet, rolled)
    await before_full_restart()
    exits = await c.stop_all()
    res.full_restart_exits = [e.seconds for e in exits]
    await c.start_all(http)
    await _probe(http, c, cookies, res)
    await _owner(http, c, next(iter(cookies.values())), res)
    res.calls_full_restart = _delta(rolled, await _calls(http, c))
