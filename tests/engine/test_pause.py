"""The app-wide pause: one handler for every 429, told to the owner, shared with every instance,
stored for the next process; a 429 met by the last-played look-up pauses polling like a poll's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from harness.engine import (
    FakeAccounts,
    FakeNotices,
    FakeSpotify,
    MemoryPauses,
    make_hub,
    subscribers,
)
from harness.helpers import FetchSource, reads_of

from nowplaying.clock import FakeClock
from nowplaying.coord.base import LocalCoordinator
from nowplaying.engine.live import LiveHub, Status
from nowplaying.engine.pause import AppPause
from nowplaying.engine.reads import Reads
from nowplaying.engine.schedule import Schedule
from nowplaying.models import QUOTA_EXCEEDED, NowPlaying, PlayedItem
from nowplaying.sources.base import RateLimited
from nowplaying.sources.spotify.errors import RateLimited as SpotifyRateLimited
from nowplaying.store import Account, Pause

pytestmark = pytest.mark.anyio
HOURS = 3600.0


async def test_a_hit_is_told_shared_and_stored(clock: FakeClock) -> None:
    notices, pauses, coord = FakeNotices(), MemoryPauses(), LocalCoordinator()
    pause = AppPause(clock, coord, store=pauses, notices=notices)
    await pause.hit(5 * HOURS, QUOTA_EXCEEDED)
    until = clock.now() + 5 * HOURS
    assert notices.pauses == [(5 * HOURS, QUOTA_EXCEEDED)]
    assert pauses.pause == Pause(until, QUOTA_EXCEEDED)
    assert await coord.paused_until() == until and await coord.pause_reason() == QUOTA_EXCEEDED
    assert pause.current == Pause(until, QUOTA_EXCEEDED) and pause.hits == 1
    await pause.hit(30)  # a shorter one does not shorten it, and is not a new pause
    assert pause.current == Pause(until, QUOTA_EXCEEDED) and pause.hits == 1
    await clock.advance(5 * HOURS)
    assert pause.current is None


async def test_a_stored_pause_is_honoured_after_a_restart(clock: FakeClock) -> None:
    pauses = MemoryPauses()
    pauses.pause = Pause(clock.now() + HOURS, QUOTA_EXCEEDED)
    pause = AppPause(clock, LocalCoordinator(), store=pauses)
    await pause.start()
    assert pause.current == pauses.pause


class HistorySource(FetchSource):
    """Nothing plays; the recently-played look-up meets the quota."""

    def __init__(self) -> None:
        super().__init__(self._nothing)
        self.history_calls = 0

    async def _nothing(self, account_id: str) -> NowPlaying:
        return NowPlaying(is_playing=False)

    async def recently_played(self, account_id: str, limit: int) -> list[PlayedItem]:
        self.history_calls += 1
        raise RateLimited(5 * HOURS, QUOTA_EXCEEDED)

    def tells_history(self, scopes: frozenset[str]) -> bool:
        return True


@pytest.fixture
async def scene(clock: FakeClock) -> AsyncIterator[tuple[LiveHub, HistorySource, FakeNotices]]:
    source, notices, coord = HistorySource(), FakeNotices(), LocalCoordinator()
    shown = Account("ana", "Ana", "", frozenset(), consented_at=0.0, show_last_played=True)
    reads = Reads(source, accounts=FakeAccounts({"ana": shown}), notices=notices)
    hub = LiveHub(
        reads,
        clock,
        schedule=Schedule(poll_seconds=5.0),
        pause=AppPause(clock, coord, notices=notices),
        coord=coord,
    )
    await hub.start()
    yield hub, source, notices
    await hub.close()


async def test_a_quota_met_by_the_last_played_look_up_pauses_and_tells_the_owner(
    scene: tuple[LiveHub, HistorySource, FakeNotices], clock: FakeClock
) -> None:
    hub, source, notices = scene
    async with hub.subscribe("ana"):
        await clock.advance(1)
        assert source.history_calls == 1
        assert notices.pauses == [(5 * HOURS, QUOTA_EXCEEDED)]
        assert hub.pause is not None and hub.pause.quota
        polls = hub.counts["polls"]
        await clock.advance(HOURS, step=60)
        assert hub.counts["polls"] == polls, "no poll during the pause"
        snap = hub.peek("ana")
        assert snap is not None and snap.status is Status.STALE


async def test_quota_pause_is_stored_and_told_apart(
    started_hub: LiveHub, spotify: FakeSpotify, clock: FakeClock, pauses: MemoryPauses
) -> None:
    """QUOTA_EXCEEDED pauses everything for its hours-long Retry-After, and is stored."""
    async with subscribers(started_hub, "a", 1) as (queue,):
        await clock.advance(1)
        queue.get_nowait()
        spotify.errors = [SpotifyRateLimited(5 * HOURS, QUOTA_EXCEEDED)]
        await clock.advance(5)
        assert queue.get_nowait().status is Status.STALE
        calls = spotify.calls
        await clock.advance(600, step=5)
        assert spotify.calls == calls  # nothing during the lockout
    assert started_hub.pause is not None and started_hub.pause.quota
    assert pauses.pause == Pause(started_hub.app_pause.until, QUOTA_EXCEEDED)
    assert started_hub.app_pause.until == pytest.approx(clock.now() - 600 + 5 * HOURS, abs=6)


async def test_window_429_is_not_the_quota(
    started_hub: LiveHub, spotify: FakeSpotify, clock: FakeClock, pauses: MemoryPauses
) -> None:
    """A rolling-window 429 (no reason) pauses briefly and is recorded as ``rate_limit``."""
    await started_hub.current("a")
    spotify.errors = [SpotifyRateLimited(10)]
    async with subscribers(started_hub, "a", 1):
        await clock.advance(5)
        assert started_hub.pause is not None and not started_hub.pause.quota
        assert pauses.pause is not None and pauses.pause.reason == "rate_limit"
        calls = spotify.calls
        await clock.advance(20, step=1)
        assert spotify.calls > calls  # polling resumed after the 10 s
    assert started_hub.pause is None


async def test_restart_during_pause_honours_it(
    spotify: FakeSpotify, clock: FakeClock, pauses: MemoryPauses
) -> None:
    """A hub started while a stored pause runs makes no call until it ends, then polls."""
    pauses.pause = Pause(clock.now() + 2 * HOURS, QUOTA_EXCEEDED)
    hub = make_hub(spotify, clock, pauses)
    await hub.start()
    try:
        assert hub.pause is not None and hub.pause.quota
        snap = await hub.current("a")
        assert snap is not None and snap.status is Status.STALE and snap.playing is None
        assert snap.retry_after == pytest.approx(2 * HOURS, abs=1)
        async with subscribers(hub, "a", 1):
            await clock.advance(HOURS, step=30)
            assert spotify.calls == 0
            await clock.advance(HOURS + 60, step=30)
            assert spotify.calls >= 1
    finally:
        await hub.close()


async def test_unreadable_stored_pause_does_not_stop_the_start(
    spotify: FakeSpotify, clock: FakeClock, pauses: MemoryPauses
) -> None:
    """A store outage at start is logged; the hub still serves (and cannot store a pause)."""
    pauses.fail = True
    hub = make_hub(spotify, clock, pauses)
    await hub.start()
    try:
        assert (await hub.current("a")) is not None
        spotify.errors = [SpotifyRateLimited(30)]
        async with subscribers(hub, "a", 1):
            await clock.advance(6)
        assert hub.pause is not None  # honoured in memory all the same
    finally:
        await hub.close()


async def test_pause_set_by_another_instance_carries_its_reason(
    spotify: FakeSpotify, clock: FakeClock, pauses: MemoryPauses
) -> None:
    """A pause found in the coordinator is adopted with its reason (for the owner page)."""
    coord = LocalCoordinator()
    hub = LiveHub(
        reads_of(spotify.fetch),
        clock,
        schedule=Schedule(poll_seconds=5.0),
        pause=AppPause(clock, coord, store=pauses),
        coord=coord,
    )
    await hub.start()
    try:
        await hub.current("a")
        await coord.set_pause(clock.now() + HOURS, QUOTA_EXCEEDED)
        async with subscribers(hub, "a", 1):
            calls = spotify.calls
            await clock.advance(60, step=5)
            assert spotify.calls == calls
        assert hub.pause is not None and hub.pause.quota
    finally:
        await hub.close()
