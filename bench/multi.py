"""Multi-instance: three ``nowplaying serve`` processes sharing PostgreSQL and Redis, against one.

The cluster is the one ``tests/procs/test_multi_instance.py`` starts
(:func:`harness.cluster.cluster`: a ``nowplaying simulator`` process with five users, a fresh
PostgreSQL database, the test Redis db flushed, three servers behind a loopback balancer that only
the logins use), with ``NOWPLAYING_POLL_SECONDS=5``; everything listens on 127.0.0.1. Five accounts
sign in, and 300 SSE viewers (60 per account) watch them. Two phases, the same viewers and the same
accounts:

1. **3 instances**: every account's 60 viewers are spread 20/20/20 over the three servers.
2. **1 instance**: the other two servers are killed and their viewers move to the first; the
   phase starts once it holds every account's polling lease.

Each phase counts the simulator's ``currently-playing`` calls per account over ``WINDOW``
seconds. Calls per minute come from the calls' times (the counters are read every 0.1 s): the
calls after the first over the time from the first to the last, since a count over 30 s with
one poll per 5 s rounds to whole polls (5 or 6, whatever the rate). Meanwhile, at random
moments, the bench skips tracks (the same schedule in both phases) and times each skip until
the new title reaches the slowest viewer of that account on each instance. Five seconds into
each window every access token expires once, and the window's ``token:refresh_token`` calls
are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import redis.asyncio as aioredis
from harness.cluster import Cluster, Viewer, cluster, login, sim_calls, wait_for, watch
from harness.helpers import ONE_ADDRESS_AUDIENCE
from harness.services import POSTGRES_URL, REDIS_URL

from bench.latency import GAP_EVERY, Samples
from nowplaying.simulator import default_playlist

ACCOUNTS = [f"user{n}" for n in range(1, 6)]
VIEWERS_PER_ACCOUNT = 60
POLL_SECONDS = 5.0
INSTANCES = 3
WINDOW = 20.0  # seconds of counting per phase
SKIPS = 8
SLACK = 3.0  # a skip that has not reached every viewer by poll + this is a miss
LOOPBACK = ("127.0.0.1", "localhost", "::1")
SENTINEL = "bench:multi:sentinel"  # gone if another process flushes Redis db 15 meanwhile
SAMPLE_EVERY = 0.1  # seconds between reads of the simulator's call counters
EXPIRE_AT = 5.0  # seconds into each window: every access token expires (once)
ENDS = 4  # natural track ends timed per account, all accounts at once (3 instances)
LEFT = (6.0, 9.0)  # seconds left of the track each is played from: seen before it ends


class TimedEvents(list[dict[str, Any]]):
    """A viewer's events that remember when each arrived (:func:`watch` appends to it).

    ``arrived`` is set on every append; an account's viewers share one.
    """

    def __init__(self, arrived: asyncio.Event) -> None:
        super().__init__()
        self.times: list[float] = []
        self.arrived = arrived

    def append(self, item: dict[str, Any]) -> None:
        self.times.append(time.time())
        super().append(item)
        self.arrived.set()


@dataclass
class Skip:
    account: str
    slowest: dict[int, float | None]
    """Per instance: seconds from the change to the last of its viewers seeing it (None: missed)."""
    poll: float | None = None
    """Seconds from the change to the first ``currently-playing`` call for the account after it
    (the simulator's call times): the wait for a poll. The rest of ``slowest`` is the way from
    that poll to the viewers (None: no poll seen)."""


@dataclass
class Phase:
    instances: int
    window: float
    per_account: dict[str, int]
    """currently-playing calls counted in the window."""
    rates: dict[str, float]
    """The same per minute, from the time between the first and the last call in the window."""
    skips: list[Skip]
    viewer_errors: int
    refresh_calls: int
    """token:refresh_token calls in the window, which has one expiry of every access token."""

    @property
    def per_minute(self) -> float:
        """Mean currently-playing calls per account per minute (from the call times)."""
        return statistics.mean(self.rates.values())

    @property
    def counted_per_minute(self) -> float:
        """Mean calls per account counted in the window, scaled to a minute."""
        return statistics.mean(self.per_account.values()) * 60 / self.window

    def polls(self) -> Samples:
        """Per skip: the wait from the change to the first poll after it."""
        out = Samples()
        for skip in self.skips:
            if skip.poll is None:
                out.missed += 1
            else:
                out.values.append(skip.poll)
        return out

    def delivery(self) -> Samples:
        """Per skip: from the first poll after the change to the slowest viewer (all instances)."""
        out = Samples()
        for skip in self.skips:
            values = list(skip.slowest.values())
            if skip.poll is None or None in values:
                out.missed += 1
            else:
                out.values.append(max(v for v in values if v is not None) - skip.poll)
        return out

    def samples(self, instance: int | None = None) -> Samples:
        """Per-skip slowest viewer on ``instance``, or over all instances (None)."""
        out = Samples()
        for skip in self.skips:
            values = [skip.slowest[instance]] if instance is not None else skip.slowest.values()
            if any(v is None for v in values):
                out.missed += 1
            else:
                out.values.append(max(v for v in values if v is not None))
        return out


@dataclass
class Result:
    skipped: str | None = None
    multi: Phase | None = None
    single: Phase | None = None
    accounts: int = len(ACCOUNTS)
    viewers_per_account: int = VIEWERS_PER_ACCOUNT
    leases: dict[int, int] = field(default_factory=dict)
    """Accounts whose polling lease each instance held during the 3-instance phase."""
    disturbed: bool = False
    """Redis db 15 was flushed by something else during the run (the numbers are suspect)."""
    poll_seconds: float = POLL_SECONDS
    seconds: float = 0.0
    natural: Samples = field(default_factory=Samples)
    """3 instances, every account: from a natural track end to the slowest viewer of the account
    (issue 22's target: p95 <= 1 s)."""


def _where(url: str) -> str:
    """host:port of a service URL (never its credentials)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


async def _unavailable() -> str | None:
    """Why the services cannot be used, or None."""
    for what, url in (("PostgreSQL", POSTGRES_URL), ("Redis", REDIS_URL)):
        if urlsplit(url).hostname not in LOOPBACK:
            return f"{what} at {_where(url)} is not on 127.0.0.1"
    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=3)
        await conn.close()
    except (OSError, asyncpg.PostgresError, TimeoutError) as e:
        return f"PostgreSQL not reachable at {_where(POSTGRES_URL)} ({type(e).__name__})"
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as e:
        return f"Redis not reachable at {_where(REDIS_URL)} ({type(e).__name__})"
    finally:
        await client.aclose()
    return None


async def run(seed: int = 1) -> Result:
    if reason := await _unavailable():
        return Result(skipped=reason)
    started = time.monotonic()
    # The same skip moments (offsets into the poll interval) in both phases.
    rng = random.Random(seed)
    schedule = [(ACCOUNTS[n % len(ACCOUNTS)], rng.uniform(0, POLL_SECONDS)) for n in range(SKIPS)]
    with (
        tempfile.TemporaryDirectory(prefix="bench-multi-") as logs,
        cluster(
            Path(logs),
            instances=INSTANCES,
            users=len(ACCOUNTS),
            poll=POLL_SECONDS,
            env=ONE_ADDRESS_AUDIENCE,  # 300 viewers from 127.0.0.1 on one instance in phase 2
        ) as c,
    ):
        result = await _measure(c, schedule)
    result.seconds = time.monotonic() - started
    return result


async def _measure(c: Cluster, schedule: list[tuple[str, float]]) -> Result:
    result = Result()
    cookies = {user: await login(c.public, user) for user in ACCOUNTS}
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    timeout = httpx.Timeout(10, read=None)
    redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    tasks: dict[int, asyncio.Task[None]] = {}
    arrived = {user: asyncio.Event() for user in ACCOUNTS}
    try:
        async with (
            httpx.AsyncClient(limits=limits, timeout=timeout) as http,
            httpx.AsyncClient(timeout=10) as control,
        ):
            viewers: list[Viewer] = []

            async def add(placements: list[tuple[int, str]]) -> None:
                fresh = [
                    Viewer(instance=instance, account=user, events=TimedEvents(arrived[user]))
                    for instance, user in placements
                ]
                for v in fresh:
                    tasks[id(v)] = asyncio.create_task(watch(http, c, v, cookies[v.account]))
                viewers.extend(fresh)

                async def all_have_data() -> bool:
                    return all(v.events for v in fresh)

                await wait_for(all_have_data, 30, "every viewer got a first event")

            await redis.set(SENTINEL, "1")
            # Phase 1: three instances, each account's viewers spread evenly over them, all
            # connecting at once; account k's first viewer is on instance k % 3.
            await add(
                [
                    ((n + k) % INSTANCES, user)
                    for n in range(VIEWERS_PER_ACCOUNT)
                    for k, user in enumerate(ACCOUNTS)
                ]
            )
            result.multi = await _phase(control, c, viewers, INSTANCES, schedule)
            ends = await asyncio.gather(
                *(
                    _natural_ends(control, c, [v for v in viewers if v.account == user], user, k)
                    for k, user in enumerate(ACCOUNTS)
                )
            )
            for per_account in ends:
                result.natural.values += [t for t in per_account if t is not None]
                result.natural.missed += sum(1 for t in per_account if t is None)
            ids = {}
            for i in c.procs:
                ids[(await control.get(f"{c.url(i)}/healthz")).json()["instance"]] = i
            for user in ACCOUNTS:
                holder = ids.get(await redis.get(f"np:lease:{user}") or "")
                if holder is not None:
                    result.leases[holder] = result.leases.get(holder, 0) + 1
            result.disturbed = not await redis.exists(SENTINEL)

            # Phase 2: one instance. Its viewers stay; the others' move to it.
            for v in [v for v in viewers if v.instance != 0]:
                task = tasks.pop(id(v))
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                viewers.remove(v)
            for i in range(1, INSTANCES):
                c.kill(i)
            first = next(iid for iid, i in ids.items() if i == 0)
            moved = VIEWERS_PER_ACCOUNT - VIEWERS_PER_ACCOUNT // INSTANCES
            await add([(0, user) for _ in range(moved) for user in ACCOUNTS])

            async def leases_moved() -> bool:
                return all([await redis.get(f"np:lease:{u}") == first for u in ACCOUNTS])

            await wait_for(leases_moved, 20, "instance 0 holds every lease")
            result.single = await _phase(control, c, viewers, 1, schedule)
            result.disturbed = not await redis.exists(SENTINEL)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await redis.aclose()
    return result


async def _phase(
    control: httpx.AsyncClient,
    c: Cluster,
    viewers: list[Viewer],
    instances: int,
    schedule: list[tuple[str, float]],
) -> Phase:
    """Count calls over ``WINDOW`` seconds while the schedule's skips run, account by account."""
    errors_before = sum(1 for v in viewers if v.error or v.ended)
    await control.post(f"{c.sim_url}/_control/calls/reset")
    started = time.monotonic()
    skips = [
        asyncio.create_task(
            _skips(
                control,
                c,
                [v for v in viewers if v.account == user],
                user,
                [delay for account, delay in schedule if account == user],
            )
        )
        for user in ACCOUNTS
    ]
    expiry = asyncio.create_task(_expire(control, c, EXPIRE_AT))
    try:
        seen, counted = await _call_times(control, c, started + WINDOW)
        window = time.monotonic() - started
        done = await asyncio.gather(*skips)
    finally:
        for task in [*skips, expiry]:
            task.cancel()
    return Phase(
        instances=instances,
        window=window,
        per_account={u: len(seen[u]) for u in ACCOUNTS},
        rates={u: _rate(seen[u], window) for u in ACCOUNTS},
        skips=[s for per_account in done for s in per_account],
        viewer_errors=sum(1 for v in viewers if v.error or v.ended) - errors_before,
        refresh_calls=counted.get("token:refresh_token", 0),
    )


async def _expire(control: httpx.AsyncClient, c: Cluster, after: float) -> None:
    """Expire every access token once. The 401 is not counted as a per-user call, and the
    retry after the refresh replaces the failed call, so the per-account counts stay fair."""
    await asyncio.sleep(after)
    await control.post(f"{c.sim_url}/_control/tokens/expire")


async def _call_times(
    control: httpx.AsyncClient, c: Cluster, until: float
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """When each account's currently-playing calls were made (to ``SAMPLE_EVERY``), until then;
    and the last counters read."""
    seen: dict[str, list[float]] = {u: [] for u in ACCOUNTS}
    while True:
        last = time.monotonic() >= until
        counted = await sim_calls(control, c)
        now = time.monotonic()
        for u in ACCOUNTS:
            new = counted.get(f"currently-playing:{u}", 0) - len(seen[u])
            seen[u] += [now] * new
        if last:
            return seen, counted
        await asyncio.sleep(min(SAMPLE_EVERY, max(0.0, until - now)))


def _rate(times: list[float], window: float) -> float:
    """Calls per minute: from the first call to the last, else the count over the window."""
    if len(times) >= 3 and times[-1] > times[0]:
        return (len(times) - 1) * 60 / (times[-1] - times[0])
    return len(times) * 60 / window


async def _skips(
    control: httpx.AsyncClient,
    c: Cluster,
    viewers: list[Viewer],
    account: str,
    delays: list[float],
) -> list[Skip]:
    """Skip ``account``'s track after each delay in turn; time the slowest viewer per instance."""
    out = []
    for delay in delays:
        await asyncio.sleep(delay)
        out.append(await _skip(control, c, viewers, account))
    return out


async def _skip(
    control: httpx.AsyncClient, c: Cluster, viewers: list[Viewer], account: str
) -> Skip:
    marks = [len(v.events) for v in viewers]
    played = (await control.post(f"{c.sim_url}/_control/users/{account}/player/skip")).json()
    title = played["item"]["name"]
    changed_at = played["timestamp"] / 1000  # the simulator's clock: the machine's
    deadline = changed_at + POLL_SECONDS + SLACK
    arrived = _events(viewers[0]).arrived  # shared by the account's viewers
    while True:
        arrived.clear()
        seen = [_arrival(v, mark, title) for v, mark in zip(viewers, marks, strict=True)]
        remaining = deadline - time.time()
        if None not in seen or remaining <= 0:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived.wait(), remaining)
    slowest: dict[int, float | None] = {}
    for instance in sorted({v.instance for v in viewers}):
        times = [t for v, t in zip(viewers, seen, strict=True) if v.instance == instance]
        slowest[instance] = (
            None if None in times else max(t for t in times if t is not None) - changed_at
        )
    return Skip(account, slowest, await _first_poll(control, c, account, changed_at))


async def _first_poll(
    control: httpx.AsyncClient, c: Cluster, account: str, since: float
) -> float | None:
    """Seconds from ``since`` to the account's first ``currently-playing`` call at or after it
    (the simulator's call times, on the same machine clock), or None."""
    times = (await control.get(f"{c.sim_url}/_control/calls/times")).json()
    after = [t for t in times.get(f"currently-playing:{account}", []) if t >= since]
    return min(after) - since if after else None


async def _natural_ends(
    control: httpx.AsyncClient, c: Cluster, viewers: list[Viewer], account: str, seed: int
) -> list[float | None]:
    """:data:`ENDS` times: play a track :data:`LEFT` seconds before its end (uniform) and time its
    natural end to the last of the account's viewers showing another title (None: missed)."""
    rng = random.Random(seed)
    durations = [int(item["duration_ms"]) for item in default_playlist()]
    out: list[float | None] = []
    for _ in range(ENDS):
        item = rng.choice([i for i in range(len(durations)) if (i + 1) % GAP_EVERY != 0])
        left = rng.uniform(*LEFT)
        body = {"item": item, "progress_ms": durations[item] - int(left * 1000)}
        marks = [len(v.events) for v in viewers]
        played = (
            await control.post(f"{c.sim_url}/_control/users/{account}/player/play", json=body)
        ).json()
        title = played["item"]["name"]
        ends_at = played["timestamp"] / 1000 + left
        deadline = ends_at + POLL_SECONDS + SLACK
        arrived = _events(viewers[0]).arrived

        pairs = list(zip(viewers, marks, strict=True))
        while (
            None in (seen := [_after(v, m, title, ends_at) for v, m in pairs])
            and (remaining := deadline - time.time()) > 0
        ):
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), remaining)
        out.append(None if None in seen else max(t for t in seen if t is not None) - ends_at)
        await asyncio.sleep(rng.uniform(0.5, 2.0))
    return out


def _after(v: Viewer, mark: int, title: str, since: float) -> float | None:
    """When ``v`` first got an event titled other than ``title`` after ``since``, past ``mark``."""
    events = _events(v)
    for k in range(mark, len(events)):
        if events.times[k] >= since - 1 and events[k].get("title") not in (None, title):
            return events.times[k]
    return None


def _events(v: Viewer) -> TimedEvents:
    events = v.events
    assert isinstance(events, TimedEvents)
    return events


def _arrival(v: Viewer, mark: int, title: str) -> float | None:
    """When ``v`` first got an event with ``title`` at or after index ``mark``."""
    events = _events(v)
    for k in range(mark, len(events)):
        if events[k].get("title") == title:
            return events.times[k]
    return None
