"""SSE ids grow per widget, and viewers get every change their instance shows, across a Redis
outage, a lease move and a restart: real ``nowplaying serve`` processes, a real redis-server of
the test's own killed and started again, real PostgreSQL (and SQLite for one instance alone).

Viewers are :class:`~harness.eventsource.EventSource` clients (they reconnect with
``Last-Event-ID``); beside them the test reads each instance's ``/api/spotify`` often, and every
title that JSON showed must have reached that instance's viewers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from harness.cluster import Cluster, cluster, login
from harness.eventsource import EventSource, close_all
from harness.redis_server import PrivateRedis
from harness.sim_server import login_and_publish, server_and_simulator

from nowplaying.coord.keys import Keys

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
JSON_EVERY = 0.2


async def until(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    """Wait (bounded) until ``check()`` holds."""
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g}s: {what}")
        await asyncio.sleep(0.05)


def title_of(data: object) -> str | None:
    title = data.get("title") if isinstance(data, dict) else None
    return title if isinstance(title, str) else None


def titles(v: EventSource) -> list[str]:
    return [t for m in v.messages if (t := title_of(m.data)) is not None]


def backwards(v: EventSource) -> list[tuple[int, int]]:
    """Each id at or below one the viewer had before it (across its reconnections)."""
    ids = [int(m.id) for m in v.messages]
    return [(a, b) for a, b in itertools.pairwise(ids) if b <= a]


def shows(v: EventSource, title: str) -> bool:
    return title_of(v.last) == title


class JsonWatch:
    """Reads one instance's ``/api/spotify`` every :data:`JSON_EVERY` seconds; notes each title
    it shows (with when)."""

    def __init__(self, http: httpx.AsyncClient, url: str, cookie: str) -> None:
        self.http, self.url, self.cookie = http, url, cookie
        self.shown: list[tuple[float, str]] = []

    async def run(self) -> None:
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                headers = {"Cookie": self.cookie} if self.cookie else {}
                response = await self.http.get(self.url, headers=headers)
                title = title_of(response.json())
                if title is not None and (not self.shown or self.shown[-1][1] != title):
                    self.shown.append((time.monotonic(), title))
            await asyncio.sleep(JSON_EVERY)


def unseen(viewers: list[EventSource], json: JsonWatch) -> list[str]:
    """Titles the instance's JSON showed (after the viewers' first event) that a viewer of it
    never received."""
    first = max(v.messages[0].at for v in viewers)
    return [
        title for at, title in json.shown if at >= first for v in viewers if title not in titles(v)
    ]


async def _account_id(c: Cluster) -> str:
    conn = await asyncpg.connect(c.env["NOWPLAYING_DATABASE_URL"])
    try:
        return str(await conn.fetchval("SELECT account_id FROM sources WHERE kind = 'spotify'"))
    finally:
        await conn.close()


async def _instance_id(http: httpx.AsyncClient, c: Cluster, i: int) -> str:
    return str((await http.get(f"{c.url(i)}/healthz")).json()["instance"])


async def _skip(c: Cluster) -> str:
    await asyncio.to_thread(c.control, "users/user1/player/skip")
    return str((await asyncio.to_thread(c.player, "user1"))["item"]["name"])


async def test_ids_grow_across_a_redis_outage_and_a_lease_move(tmp_path: Path) -> None:
    """Redis killed under two instances; instance 0 stopped (SIGSTOP) while instance 1 alone
    sees two changes, then continued (it sees the last); Redis started again, empty, and
    instance 0 takes the lease. The next change reaches the viewers of both, under an id above
    every one they had: with ids one more than the last, instance 0 went on from its own
    sequence, one change behind instance 1's, and instance 1's viewers skipped the change as
    one they already had (while its JSON showed it)."""
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    try:
        env = {"NOWPLAYING_REDIS_URL": redis.url}
        with cluster(tmp_path / "logs", instances=2, users=1, env=env) as c:
            await _outage_and_lease_move(c, redis)
    finally:
        redis.kill()


async def _outage_and_lease_move(c: Cluster, redis: PrivateRedis) -> None:
    cookie = await login(c.public, "user1")
    account = await _account_id(c)
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(10, read=None)) as http:
        ids = [await _instance_id(http, c, i) for i in (0, 1)]
        viewers = [
            [
                EventSource(http, f"{c.url(i)}/api/spotify/events", headers={"Cookie": cookie})
                for _ in range(3)
            ]
            for i in (0, 1)
        ]
        jsons = [JsonWatch(http, f"{c.url(i)}/api/spotify", cookie) for i in (0, 1)]
        tasks = [asyncio.create_task(v.run()) for vs in viewers for v in vs]
        tasks += [asyncio.create_task(j.run()) for j in jsons]

        async def everyone(title: str, instances: tuple[int, ...] = (0, 1)) -> bool:
            return all(shows(v, title) for i in instances for v in viewers[i])

        try:

            async def started() -> bool:
                return all(v.messages for vs in viewers for v in vs)

            await until(started, 30, "every viewer has the state")
            first = await _skip(c)
            await until(lambda: everyone(first), 20, f"{first!r} everywhere")

            redis.kill()
            while_down = await _skip(c)  # both poll for themselves now
            await until(lambda: everyone(while_down), 30, f"{while_down!r} while Redis is down")
            proc0 = c.procs[0]
            proc0.send_signal(signal.SIGSTOP)
            try:
                for _ in range(2):  # instance 1 alone sees these
                    alone = await _skip(c)
                    await until(functools.partial(everyone, alone, (1,)), 30, f"{alone!r} on 1")
            finally:
                proc0.send_signal(signal.SIGCONT)
            await until(lambda: everyone(alone, (0,)), 30, f"{alone!r} on 0 after SIGCONT")

            redis.start()
            raw = aioredis.Redis.from_url(redis.url)
            try:  # instance 0 leads from now on (before either instance asks for the lease)
                await raw.set(Keys.lease(account), ids[0], px=60_000)
            finally:
                await raw.aclose()

            async def recovered() -> bool:
                logs = [(c.logs / f"instance-{i}.log").read_text() for i in (0, 1)]
                return all("Redis is back" in log for log in logs)

            await until(recovered, 30, "both instances on Redis again")
            after = await _skip(c)
            await until(lambda: everyone(after), 30, f"{after!r} everywhere after the outage")

            async def both_json() -> bool:
                return all(j.shown and j.shown[-1][1] == after for j in jsons)

            await until(both_json, 30, f"{after!r} in both instances' JSON")
        finally:
            await close_all(tasks)

    every = [v for vs in viewers for v in vs]
    assert [b for v in every for b in backwards(v)] == []
    assert [unseen(viewers[i], jsons[i]) for i in (0, 1)] == [[], []]


async def test_ids_grow_across_a_restart_of_one_sqlite_instance(tmp_path: Path) -> None:
    """One instance on SQLite, viewers of its public stream; a change, SIGTERM, start again on
    the same database, a change: the viewers reconnect with ``Last-Event-ID``, get every change
    the JSON showed and never an id at or below one they had (a new process's first id is the
    clock in ms, above every id the last one minted)."""
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=10)
    async with (
        server_and_simulator(tmp_path) as (server, sim_url),
        httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(10, read=None)) as http,
    ):
        await server.start(http)
        public_id = await login_and_publish(http, server)
        viewers = [EventSource(http, f"{server.url}/p/{public_id}/events") for _ in range(3)]
        json = JsonWatch(http, f"{server.url}/p/{public_id}.json", "")
        tasks = [asyncio.create_task(v.run()) for v in viewers]
        tasks.append(asyncio.create_task(json.run()))

        async def skip() -> str:
            await http.post(f"{sim_url}/_control/users/user1/player/skip")
            player = (await http.get(f"{sim_url}/_control/users/user1/player")).json()
            return str(player["item"]["name"])

        async def everyone(title: str) -> bool:
            return all(shows(v, title) for v in viewers)

        try:

            async def started() -> bool:
                return all(v.messages for v in viewers)

            await until(started, 30, "every viewer has the state")
            before = await skip()
            await until(lambda: everyone(before), 20, f"{before!r} before the restart")
            assert server.terminate() == 0
            await server.start(http)
            after = await skip()
            await until(lambda: everyone(after), 30, f"{after!r} after the restart")
        finally:
            await close_all(tasks)

    assert [b for v in viewers for b in backwards(v)] == []
    assert all(len(v.drops) >= 1 for v in viewers)  # each reconnected across the restart
    assert unseen(viewers, json) == []
