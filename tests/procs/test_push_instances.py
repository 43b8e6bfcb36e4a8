"""Pushes across instances, with two real ``nowplaying serve`` processes on PostgreSQL and Redis
(:func:`harness.cluster.cluster`): a finished listen (``single``) ends the playing-now on every
instance, whichever instance received either and whichever polls."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
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

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


anyio_backend = module_loop


@dataclass
class Pair:
    """Two instances, user1 signed in, a viewer on each (so the account is watched)."""

    c: Cluster
    http: httpx.AsyncClient
    cookie: str
    token: str

    async def shown(self, i: int) -> dict[str, Any]:
        r = await self.http.get(f"{self.c.url(i)}/api/spotify", headers={"Cookie": self.cookie})
        data: dict[str, Any] = r.json()
        return data

    async def both(self) -> list[dict[str, Any]]:
        return [await self.shown(i) for i in range(2)]

    async def submit(self, i: int, kind: str, title: str) -> None:
        listen: dict[str, Any] = {
            "track_metadata": {
                "artist_name": "Any Player",
                "track_name": title,
                "additional_info": {"duration_ms": 600_000},
            }
        }
        if kind == "single":
            listen["listened_at"] = int(time.time())
        r = await self.http.post(
            f"{self.c.url(i)}/1/submit-listens",
            json={"listen_type": kind, "payload": [listen]},
            headers={"Authorization": f"Token {self.token}"},
        )
        assert r.json() == {"status": "ok"}, r.text


@pytest.fixture(scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pair]:
    logs: Path = tmp_path_factory.mktemp("push-instances")
    with cluster(logs, instances=2, users=1, poll=1.0) as c:
        cookie = await login(c.public, "user1")
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as http:
            account = (await http.get(f"{c.url(0)}/api/account", headers={"Cookie": cookie})).json()
            viewers = [Viewer(instance=i, account="user1") for i in range(2)]
            tasks = [asyncio.create_task(watch(http, c, v, cookie)) for v in viewers]
            try:
                yield Pair(c, http, cookie, account["pushToken"])
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize(("playing_to", "single_to"), list(itertools.product((0, 1), repeat=2)))
async def test_a_single_ends_the_playing_now_on_every_instance(
    pair: Pair, playing_to: int, single_to: int
) -> None:
    """playing_now to one instance, its ``single`` to one (every pairing, so the single reaches
    the instance that does not poll in two of them): the push shows on both, then neither
    shows it, and it stays gone through two more polls of Spotify."""
    title = f"Pushed {playing_to}{single_to}"
    await pair.submit(playing_to, "playing_now", title)

    async def pushed_everywhere() -> bool:
        return all(shown.get("title") == title for shown in await pair.both())

    await wait_for(pushed_everywhere, 15, f"{title} shown by both instances")
    await pair.submit(single_to, "single", title)

    async def ended_everywhere() -> bool:
        return all(shown.get("source") == "spotify" for shown in await pair.both())

    await wait_for(ended_everywhere, 15, f"{title} ended on both instances")
    polls = (await sim_calls(pair.http, pair.c)).get("currently-playing", 0)

    async def polled_twice() -> bool:
        calls = await sim_calls(pair.http, pair.c)
        return calls.get("currently-playing", 0) >= polls + 2

    await wait_for(polled_twice, 20, "two more polls of Spotify")
    for i in range(2):
        shown = await pair.shown(i)
        assert (shown.get("source"), shown.get("title")) != ("push", title), (i, shown)
