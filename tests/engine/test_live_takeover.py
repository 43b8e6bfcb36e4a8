"""An instance taking over an account's polling continues the shared versions (real Redis).

The versions are the SSE event ids that every instance, and ``Last-Event-ID``, compare: a new
leader that started a sequence of its own (at 1, as it once did, or from a clock behind the
last leader's) would send ids going backwards, and an id it reused would make followers and
reconnecting viewers skip a real change as "already seen" (found by the rolling restart test).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from harness.helpers import reads_of

from nowplaying.clock import FakeClock
from nowplaying.coord.redis import RedisCoordinator
from nowplaying.engine.fanout import Subscription
from nowplaying.engine.live import LiveHub, Snapshot
from nowplaying.engine.schedule import Schedule
from nowplaying.models import Item, Kind, NowPlaying

pytestmark = pytest.mark.anyio


async def _title(clock: FakeClock, queue: Subscription, title: str) -> Snapshot:
    """Move time on until a snapshot playing ``title`` arrives (bounded in real time too:
    Redis is real I/O, so the poller needs real moments between fake-clock steps)."""
    async with asyncio.timeout(5):
        while True:
            while not queue.empty():
                snap = queue.get_nowait()
                if snap.playing and snap.playing.item and snap.playing.item.title == title:
                    return snap
            await clock.advance(0.25)
            await asyncio.sleep(0.01)


async def test_a_new_leader_continues_the_versions(flushed: str) -> None:
    """Instance A polls three changes and stops; fresh instance B takes over: ids go on."""
    clock = FakeClock(start=time.time())  # Redis TTLs are real time: start the fake clock at now
    title = ["one"]

    async def fetch(account_id: str) -> NowPlaying:
        it = Item(Kind.TRACK, title[0], ("x",), None, None, None, 600_000, uri=title[0])
        return NowPlaying(True, Kind.TRACK, it, 0, clock.now())

    a = LiveHub(
        reads_of(fetch), clock, schedule=Schedule(poll_seconds=1), coord=RedisCoordinator(flushed)
    )
    await a.start()
    try:
        async with a.subscribe("acc") as queue:
            for t in ("one", "two", "three"):
                title[0] = t
                await _title(clock, queue, t)
            old = a.peek("acc")
    finally:
        await a.close()  # a graceful stop: the lease is released
    assert old is not None and old.version >= 3

    b = LiveHub(
        reads_of(fetch), clock, schedule=Schedule(poll_seconds=1), coord=RedisCoordinator(flushed)
    )
    await b.start()
    try:
        async with b.subscribe("acc") as queue:
            title[0] = "four"
            new = await _title(clock, queue, "four")
            assert b.counts["polls"] >= 1  # B leads now
    finally:
        await b.close()
    assert new.version == old.version + 1  # the last leader's sequence, one change later
