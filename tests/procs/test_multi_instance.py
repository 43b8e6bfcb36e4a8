"""Three server processes sharing PostgreSQL and Redis behave as one (loopback only).

One cluster for the module (:func:`harness.cluster.cluster`): 300 SSE viewers on 5 accounts,
spread over the instances, connected once. One test per behaviour, in the order they run, each
leaving the cluster usable for the next: upstream calls per account are what a single instance
makes, one token call per expiry per account, a change reaches viewers on every instance, killing
the polling instance moves its lease with no viewer error and no token lost, and restarting every
instance keeps every account connected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from harness.cluster import (
    Cluster,
    Viewer,
    cluster,
    login,
    module_loop,
    sim_calls,
    wait_for,
    watch,
)
from harness.services import REDIS_URL

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ACCOUNTS = [f"user{n}" for n in range(1, 6)]
VIEWERS_PER_ACCOUNT = 60
POLL = 2.0


anyio_backend = module_loop


@dataclass
class Scene:
    """The running cluster, a session per account, and the viewers watching it."""

    c: Cluster
    http: httpx.AsyncClient
    cookies: dict[str, str]
    viewers: list[Viewer]
    tasks: list[asyncio.Task[None]]
    victim: int | None = None  # the instance the lease test killed

    def errors(self, viewers: list[Viewer] | None = None) -> list[tuple[int, str, str]]:
        return [
            (v.instance, v.account, v.error) for v in viewers or self.viewers if v.error is not None
        ]

    async def calls(self) -> dict[str, int]:
        return await sim_calls(self.http, self.c)

    async def control(self, path: str) -> None:
        r = await self.http.post(f"{self.c.sim_url}/_control/{path}")
        assert r.status_code < 300, r.text


@pytest.fixture(scope="module")
async def scene(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scene]:
    """The cluster with every account connected and 60 viewers per account, 20 per instance."""
    logs: Path = tmp_path_factory.mktemp("multi-instance")
    with cluster(logs, poll=POLL) as c:
        cookies = {user: await login(c.public, user) for user in ACCOUNTS}
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
        async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(10, read=None)) as http:
            viewers = [
                Viewer(instance=n % 3, account=user)
                for user in ACCOUNTS
                for n in range(VIEWERS_PER_ACCOUNT)
            ]
            tasks = [asyncio.create_task(watch(http, c, v, cookies[v.account])) for v in viewers]
            s = Scene(c, http, cookies, viewers, tasks)
            try:

                async def all_have_data() -> bool:
                    return all(v.events for v in viewers)

                await wait_for(all_have_data, 30, "every viewer got a first event")
                assert s.errors() == [], "viewer errors"
                yield s
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


async def test_upstream_calls_per_account_match_one_instance(scene: Scene) -> None:
    """Three instances with 60 viewers per account poll Spotify as one instance would."""
    await scene.control("calls/reset")
    started = time.monotonic()
    floor = 6  # 12 s of polls every POLL seconds; a poller that stopped never gets there
    counted: dict[str, int] = {}

    async def every_account_polled() -> bool:
        counted.update(await scene.calls())
        return all(counted.get(f"currently-playing:{u}", 0) >= floor for u in ACCOUNTS)

    await wait_for(every_account_polled, 4 * floor * POLL, f"{floor} polls of every account")
    window = time.monotonic() - started
    budget = window / POLL + 3  # one poller: an interval's polls plus track ends
    for user in ACCOUNTS:
        assert floor <= counted[f"currently-playing:{user}"] <= budget, (user, window, counted)
    assert scene.errors() == []


async def test_one_token_call_per_expiry_across_instances(scene: Scene) -> None:
    """Access tokens expire: exactly one token call per account, whichever instance polls."""
    await scene.control("calls/reset")
    await scene.control("tokens/expire")

    async def all_refreshed() -> bool:
        return (await scene.calls()).get("token:refresh_token", 0) >= len(ACCOUNTS)

    await wait_for(all_refreshed, 15, "every account refreshed")
    after = await scene.calls()

    async def polled_twice_since() -> bool:  # room for a second refresh, were there one
        now = await scene.calls()
        key = "currently-playing:{}"
        return all(now.get(key.format(u), 0) >= after.get(key.format(u), 0) + 2 for u in ACCOUNTS)

    await wait_for(polled_twice_since, 10 * POLL, "every account polled twice with its new token")
    assert (await scene.calls())["token:refresh_token"] == len(ACCOUNTS)
    assert scene.errors() == []


async def test_a_change_reaches_viewers_on_every_instance(scene: Scene) -> None:
    """A skip for user1 reaches every user1 viewer, whichever instance each is connected to."""
    user1 = [v for v in scene.viewers if v.account == "user1"]
    assert {v.instance for v in user1} == {0, 1, 2}
    title_now = user1[0].events[-1]["title"]
    await scene.control("users/user1/player/skip")

    async def user1_changed() -> bool:
        return all(v.events[-1].get("title") != title_now for v in user1)

    await wait_for(user1_changed, 10, "skip reached every user1 viewer")
    assert scene.errors() == []


async def test_killing_the_polling_instance_moves_the_lease(scene: Scene) -> None:
    """SIGKILL the instance polling user2: the lease moves within 10 s, its viewers on the other
    instances get the next change with no error, and no refresh token is lost."""
    c, http = scene.c, scene.http
    redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        leader = await redis.get("np:lease:user2")
        assert leader is not None
        ids = {i: (await http.get(f"{c.url(i)}/healthz")).json()["instance"] for i in c.procs}
        victim = next(i for i, iid in ids.items() if iid == leader)
        c.kill(victim)
        scene.victim = victim

        async def lease_moved() -> bool:
            now = await redis.get("np:lease:user2")
            return now is not None and now != leader

        await wait_for(lease_moved, 10, "the lease moved to a live instance")
    finally:
        await redis.aclose()
    survivors = [v for v in scene.viewers if v.instance != victim]
    user2 = [v for v in survivors if v.account == "user2"]
    title2 = user2[0].events[-1]["title"]
    await scene.control("users/user2/player/skip")

    async def user2_changed() -> bool:
        return all(v.events[-1].get("title") != title2 for v in user2)

    await wait_for(user2_changed, 10, "the new leader serves user2's viewers")
    assert scene.errors(survivors) == []
    assert not any(v.ended for v in survivors)

    # No token lost: every account can still refresh after another expiry.
    await scene.control("tokens/expire")
    alive = next(iter(c.procs))
    for user in ACCOUNTS:
        r = await http.get(f"{c.url(alive)}/api/spotify", headers={"Cookie": scene.cookies[user]})
        assert r.status_code == 200, (user, r.text)


async def test_restarting_every_instance_keeps_every_account_connected(scene: Scene) -> None:
    """Kill and start all three instances: every session still reads its account."""
    c = scene.c
    for t in scene.tasks:  # the viewers' streams end with their instances
        t.cancel()
    await asyncio.gather(*scene.tasks, return_exceptions=True)
    for i in list(c.procs):
        c.kill(i)
    for i in range(3):
        c.start(i)
    for i in range(3):
        await asyncio.to_thread(c.wait_up, i)
    for n, user in enumerate(ACCOUNTS):
        r = await scene.http.get(
            f"{c.url(n % 3)}/api/spotify", headers={"Cookie": scene.cookies[user]}
        )
        assert r.status_code == 200, (user, r.text)
        assert "title" in r.json() or r.json() == {"isPlaying": False}, (user, r.text)
