"""The Redis outage probe: ``python -m soak outage [--short]``, loopback only.

Two ``nowplaying serve`` instances on PostgreSQL and a redis-server of the probe's own
(:class:`harness.redis_server.PrivateRedis`; the shared Redis is never touched), the simulated
Spotify rotating refresh tokens, SSE viewers split over both instances (independent clients
that reconnect with ``Last-Event-ID``). A track changes on every account every 12 s (10 s in
the short form: :attr:`Scale.every`); Redis is killed and started again later (empty); in the
middle of the outage every access token expires, so each instance must refresh while Redis is
gone. The probe also reads each instance's JSON four times a second. It prints what held:

- every viewer sees every change (the delay from the change to the viewer, p95 and max; of the
  changes missed, how many the instance's JSON showed);
- every title an instance's JSON showed reached every viewer of that instance;
- every viewer's ids grow (never one at or below one it had);
- at the end each instance's JSON shows what its viewers last received;
- 0 grants lost (every account active in the database), refreshes made during the outage;
- upstream calls within the app's budget in every 30 s.

``--short`` (run by ``make test`` through ``tests/procs/test_soak_outage.py``) is a 30 s outage
with 8 viewers; the full one 60 s with 20. The exit status is 1 if something did not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from harness.cluster import Cluster, cluster, login, run_async, wait_for
from harness.redis_server import PrivateRedis

BUDGET_30S = 60
"""The app's default call budget per 30 s (``NOWPLAYING_CALL_BUDGET_30S``), for both instances."""


@dataclass(frozen=True)
class Scale:
    accounts: int
    viewers_per_account: int
    before: float
    """Seconds of changes before Redis is killed."""
    outage: float
    after: float
    every: float
    """Seconds between changes, per account: wider than the longest wait between two polls the
    budget allows while Redis is gone (a change shorter than that can be passed over by every
    poll, and nobody, JSON or viewer, ever shows it). The instance that polled an account
    for everyone keeps its calls of the last 30 s against half the budget when the outage
    starts, and waits for them to age out: 6 s apart, changes made 8 s into the outage went
    unseen by its JSON and viewers alike (2026-12-07, load 6-9), as did one at the mid-outage
    token refresh."""


LONG = Scale(2, 10, 10.0, 60.0, 20.0, 12.0)
SHORT = Scale(2, 4, 6.0, 30.0, 12.0, 10.0)


@dataclass
class Result:
    name: str
    held: bool
    figures: str
    probe_only: bool = False
    """Judged by the probe, not by the short form in ``make test`` (see docs/operations.md)."""


@dataclass
class Viewer:
    """One SSE client of ``account`` on ``instance``: (monotonic time, id, title) per event."""

    instance: int
    account: str
    events: list[tuple[float, int, str | None]] = field(default_factory=list)
    connects: int = 0
    backwards: int = 0

    def title_seen(self, title: str, since: float) -> float | None:
        return next((at for at, _, t in self.events if t == title and at >= since), None)


async def _view(http: httpx.AsyncClient, c: Cluster, v: Viewer, cookie: str) -> None:
    """Watch until cancelled, reconnecting (after 0.5 s) with the last id, as EventSource does."""
    last: int | None = None
    while True:
        headers = {"Cookie": cookie}
        if last is not None:
            headers["Last-Event-ID"] = str(last)
        v.connects += 1
        with contextlib.suppress(httpx.HTTPError):
            url = f"{c.url(v.instance)}/api/spotify/events"
            async with http.stream("GET", url, headers=headers) as response:
                event_id: int | None = None
                async for line in response.aiter_lines():
                    if line.startswith("id: "):
                        event_id = int(line[4:])
                    elif line.startswith("data: ") and event_id is not None:
                        if last is not None and event_id <= last:
                            v.backwards += 1
                        last = event_id
                        title = json.loads(line[6:]).get("title")
                        v.events.append((time.monotonic(), event_id, title))
        await asyncio.sleep(0.5)


@dataclass
class Change:
    account: str
    title: str
    at: float


async def _changes(c: Cluster, accounts: list[str], every: float, out: list[Change]) -> None:
    """Skip a track on every account every ``every`` seconds, noting what plays then."""
    while True:
        for user in accounts:
            await asyncio.to_thread(c.control, f"users/{user}/player/skip")
            state = await asyncio.to_thread(c.player, user)
            out.append(Change(user, str(state["item"]["name"]), time.monotonic()))
        await asyncio.sleep(every)


NOT_BUDGETED = frozenset({"authorize", "consent", "cover", "coverart", "archive", "archive_node"})
"""Simulator counters that are not calls the budget counts (browsers' pages, cover images)."""


def upstream_calls(counts: dict[str, int]) -> int:
    """Token and Web API calls (``endpoint:user`` and ``token:grant`` count them twice)."""
    return sum(n for k, n in counts.items() if ":" not in k and k not in NOT_BUDGETED)


async def _calls(http: httpx.AsyncClient, c: Cluster, out: list[tuple[float, int]]) -> None:
    """Sample the simulator's count of upstream calls every second."""
    while True:
        counts = (await http.get(f"{c.sim_url}/_control/calls")).json()
        out.append((time.monotonic(), upstream_calls(counts)))
        await asyncio.sleep(1.0)


def _most_in_30s(samples: list[tuple[float, int]]) -> int:
    return max(
        (b - a for i, (t0, a) in enumerate(samples) for t1, b in samples[i:] if t1 - t0 <= 30.0),
        default=0,
    )


async def _statuses(c: Cluster) -> dict[str, str]:
    conn = await asyncpg.connect(c.env["NOWPLAYING_DATABASE_URL"])
    try:
        rows = await conn.fetch("SELECT account_id, status FROM sources WHERE kind = 'spotify'")
    finally:
        await conn.close()
    return {r["account_id"]: r["status"] for r in rows}


async def _shown(http: httpx.AsyncClient, c: Cluster, i: int, cookie: str) -> str | None:
    body = (await http.get(f"{c.url(i)}/api/spotify", headers={"Cookie": cookie})).json()
    title = body.get("title")
    return str(title) if title is not None else None


JSON_EVERY = 0.25
"""How often the probe reads each instance's JSON for each account (no upstream call: the JSON
is the instance's state, as its viewers' events are)."""


async def _json_titles(
    http: httpx.AsyncClient,
    c: Cluster,
    i: int,
    account: str,
    *,
    cookie: str,
    out: dict[tuple[int, str], list[tuple[float, str]]],
) -> None:
    """Note each title instance ``i``'s JSON shows for ``account`` (monotonic time, title), as
    it first shows it, until cancelled."""
    shown = out.setdefault((i, account), [])
    while True:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            title = await _shown(http, c, i, cookie)
            if title is not None and (not shown or shown[-1][1] != title):
                shown.append((time.monotonic(), title))
        await asyncio.sleep(JSON_EVERY)


def _pairs(
    viewers: list[Viewer], changes: list[Change]
) -> Iterator[tuple[Viewer, Change, float | None]]:
    """Each (viewer, change of its account) pair, with when the viewer saw it (None: never); a
    change superseded within a second, before any poll could see it, is left out."""
    by_account: dict[str, list[Change]] = {}
    for ch in changes:
        by_account.setdefault(ch.account, []).append(ch)
    for v in viewers:
        mine = by_account.get(v.account, [])
        for n, ch in enumerate(mine):
            nxt = mine[n + 1].at if n + 1 < len(mine) else math.inf
            if nxt - ch.at >= 1.0:
                yield v, ch, v.title_seen(ch.title, ch.at - 1.0)


def _delays(viewers: list[Viewer], changes: list[Change]) -> tuple[list[float], int]:
    """Each (viewer, change of its account) pair's delay, and how many were never seen."""
    delays, missed = [], 0
    for _, ch, seen in _pairs(viewers, changes):
        if seen is None:
            missed += 1
        else:
            delays.append(max(0.0, seen - ch.at))
    return delays, missed


async def _run(c: Cluster, redis: PrivateRedis, scale: Scale) -> list[Result]:
    accounts = [f"user{n}" for n in range(1, scale.accounts + 1)]
    cookies = {user: await login(c.public, user) for user in accounts}
    await asyncio.to_thread(c.control, "refresh-mode", {"mode": "rotate"})
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(10, read=None)) as http:
        viewers = [
            Viewer(n % 2, user) for user in accounts for n in range(scale.viewers_per_account)
        ]
        changes: list[Change] = []
        calls: list[tuple[float, int]] = []
        tasks = [asyncio.create_task(_view(http, c, v, cookies[v.account])) for v in viewers]
        tasks.append(asyncio.create_task(_calls(http, c, calls)))
        json_shown: dict[tuple[int, str], list[tuple[float, str]]] = {}
        tasks += [
            asyncio.create_task(
                _json_titles(http, c, i, user, cookie=cookies[user], out=json_shown)
            )
            for i in (0, 1)
            for user in accounts
        ]
        try:

            async def all_have_data() -> bool:
                return all(v.events for v in viewers)

            await wait_for(all_have_data, 30, "every viewer has the state")
            changing = asyncio.create_task(_changes(c, accounts, scale.every, changes))
            tasks.append(changing)
            await asyncio.sleep(scale.before)
            redis.kill()
            down = time.monotonic()
            refreshes = (await http.get(f"{c.sim_url}/_control/calls")).json()
            await asyncio.sleep(scale.outage / 2)
            await asyncio.to_thread(c.control, "tokens/expire", {})
            await asyncio.sleep(scale.outage / 2)
            during = (await http.get(f"{c.sim_url}/_control/calls")).json()
            await asyncio.to_thread(redis.start)
            up = time.monotonic()
            await asyncio.sleep(scale.after)
            changing.cancel()  # no more changes; the last must reach everyone
            await asyncio.sleep(5.0)
            shown = {(i, u): await _shown(http, c, i, cookies[u]) for i in (0, 1) for u in accounts}
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        statuses = await _statuses(c)
    record = Record(viewers, changes, calls, statuses, shown, (down, up), refreshes, during)
    record.json_shown = json_shown
    return _judge(record)


@dataclass
class Record:
    """What a run saw, to judge."""

    viewers: list[Viewer]
    changes: list[Change]
    calls: list[tuple[float, int]]
    statuses: dict[str, str]
    shown: dict[tuple[int, str], str | None]
    outage: tuple[float, float]
    before: dict[str, int]
    during: dict[str, int]
    json_shown: dict[tuple[int, str], list[tuple[float, str]]] = field(default_factory=dict)
    """Per (instance, account), each title its JSON showed and when it first did."""


def _judge(r: Record) -> list[Result]:
    viewers, changes, calls, statuses, shown = r.viewers, r.changes, r.calls, r.statuses, r.shown
    outage, before, during = r.outage, r.before, r.during
    delays, missed = _delays(viewers, changes)
    in_outage = [ch for ch in changes if outage[0] <= ch.at < outage[1]]
    out_delays, out_missed = _delays(viewers, in_outage)
    p95 = statistics.quantiles(delays, n=20)[18] if len(delays) > 1 else math.nan
    out_p95 = statistics.quantiles(out_delays, n=20)[18] if len(out_delays) > 1 else math.nan
    backwards = sum(v.backwards for v in viewers)
    last = {v.account: v for v in viewers}
    behind = [
        (v.instance, v.account)
        for v in viewers
        if v.events and v.events[-1][2] != shown[(v.instance, v.account)]
    ]
    lost = [a for a, s in statuses.items() if s != "active"]
    refreshed = during.get("token:refresh_token", 0) - before.get("token:refresh_token", 0)
    most = _most_in_30s(calls)
    unseen = _json_unseen(viewers, r.json_shown)
    in_json = _missed_in_json(viewers, changes, r.json_shown)
    live = [
        sum(1 for v in viewers if v.instance == i and _delays([v], in_outage)[0]) for i in (0, 1)
    ]
    per_instance = len(viewers) // 2
    return [
        Result(
            "both instances live",
            live == [per_instance, per_instance],
            f"viewers that saw changes made while Redis was down, per instance: {live}"
            f" of {per_instance}",
        ),
        Result(
            "every change seen",
            missed == 0 and bool(delays),
            f"{len(changes)} changes x viewers: {len(delays)} seen, {missed} missed ({in_json}"
            f" of them shown by the instance's JSON); delay p95 {p95:.2f} s, max"
            f" {max(delays, default=math.nan):.2f} s; during the outage {len(in_outage)} changes,"
            f" {out_missed} missed, p95 {out_p95:.2f} s",
            probe_only=True,
        ),
        Result(
            "JSON reached viewers",
            unseen == 0 and bool(r.json_shown),
            f"{unseen} (viewer, title) pairs its instance's JSON showed that the viewer never"
            f" received ({sum(len(t) for t in r.json_shown.values())} titles shown in the JSON)",
        ),
        Result(
            "ids grow",
            backwards == 0,
            f"{backwards} ids at or below one already received",
        ),
        Result(
            "JSON = last event",
            not behind,
            f"{len(behind)} viewers whose last event differs from their instance's JSON"
            f" ({len(last)} accounts)",
        ),
        Result(
            "0 grants lost",
            not lost and refreshed >= 1,
            f"{len(statuses) - len(lost)}/{len(statuses)} accounts active; {refreshed} refreshes"
            " made while Redis was down",
        ),
        Result(
            "within the budget",
            0 < most <= BUDGET_30S,
            f"at most {most} upstream calls in 30 s (budget {BUDGET_30S})",
        ),
    ]


SAMPLE_SLACK = 10.0
"""A viewer's event up to this long before the probe read the title in the JSON counts (a read
is slower than an event under load)."""


def _json_unseen(
    viewers: list[Viewer], shown: dict[tuple[int, str], list[tuple[float, str]]]
) -> int:
    """(viewer, title) pairs its instance's JSON showed, after the viewer's first event, that
    the viewer never received (received up to ``SAMPLE_SLACK`` before the JSON was read counts:
    a read is slower than an event under load)."""
    unseen = 0
    for v in viewers:
        if not v.events:
            continue
        for at, title in shown.get((v.instance, v.account), []):
            if at >= v.events[0][0] and v.title_seen(title, at - SAMPLE_SLACK) is None:
                unseen += 1
    return unseen


def _missed_in_json(
    viewers: list[Viewer],
    changes: list[Change],
    shown: dict[tuple[int, str], list[tuple[float, str]]],
) -> int:
    """Of the (viewer, change) pairs never seen, how many its instance's JSON showed (a viewer
    missing what its instance shows), rather than none (passed over between two polls)."""
    return sum(
        1
        for v, ch, seen in _pairs(viewers, changes)
        if seen is None
        and any(
            t == ch.title and at >= ch.at - 1.0 for at, t in shown.get((v.instance, v.account), [])
        )
    )


def run(scale: Scale) -> list[Result]:
    """The whole probe: its own redis-server, the cluster, the run; everything stopped after."""
    with tempfile.TemporaryDirectory(prefix="np-outage-") as tmp:
        redis = PrivateRedis(Path(tmp) / "redis")
        redis.start()
        try:
            env = {"NOWPLAYING_REDIS_URL": redis.url, "NOWPLAYING_LOG_LEVEL": "WARNING"}
            with cluster(Path(tmp) / "logs", instances=2, users=scale.accounts, env=env) as c:
                return run_async(_run(c, redis, scale))
        finally:
            redis.kill()


def render(results: list[Result]) -> str:
    return "\n".join(
        f"{'held' if r.held else 'FAILED':6}  {r.name:18} {r.figures}" for r in results
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m soak outage", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--short", action="store_true", help="a 30 s outage, 8 viewers")
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = run(SHORT if args.short else LONG)
    print(render(results))
    print(f"({time.monotonic() - started:.0f} s; two instances, loopback, a shared machine)")
    return 0 if all(r.held for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
