"""The recently-played cache: one upstream call per account per TTL, a failure kept for the TTL."""

from __future__ import annotations

import asyncio

import pytest

from nowplaying.clock import FakeClock
from nowplaying.engine.recent import RECENT_TTL, RecentlyPlayed
from nowplaying.models import PlayedItem
from nowplaying.sources.spotify.errors import RateLimited

pytestmark = pytest.mark.anyio


class Reads:
    def __init__(self) -> None:
        self.calls = 0
        self.fail: Exception | None = None
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, account_id: str, limit: int) -> list[PlayedItem]:
        self.calls += 1
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return []


async def test_cache_one_call_per_ttl() -> None:
    """100 concurrent views share one call; none until the TTL has passed on the clock."""
    clock, reads = FakeClock(), Reads()
    cache = RecentlyPlayed(reads, clock)
    reads.gate.clear()
    views = [asyncio.create_task(cache.get("a", 5)) for _ in range(100)]
    await asyncio.sleep(0)
    reads.gate.set()
    await asyncio.gather(*views)
    assert reads.calls == 1
    await clock.advance(RECENT_TTL - 1)
    await cache.get("a")
    assert reads.calls == 1
    await clock.advance(1)
    await cache.get("a")
    assert reads.calls == 2
    await cache.get("b")
    assert reads.calls == 3  # per account


async def test_a_failure_is_not_retried_by_every_view() -> None:
    """Spotify refusing: the error is kept for the TTL (no call per view), then tried again."""
    clock, reads = FakeClock(), Reads()
    cache = RecentlyPlayed(reads, clock)
    reads.fail = RateLimited(5, None)
    for _ in range(20):
        with pytest.raises(RateLimited):
            await cache.get("a")
    assert reads.calls == 1
    reads.fail = None
    await clock.advance(RECENT_TTL)
    assert await cache.get("a") == []
    assert reads.calls == 2
