"""The app-wide pause: one handler for every 429, told to the owner, shared with every instance,
stored for the next process; a 429 met by the last-played look-up pauses polling like a poll's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from harness.engine import FakeAccounts, FakeNotices
from harness.helpers import FetchSource

from nowplaying.clock import FakeClock
from nowplaying.coord.base import LocalCoordinator
from nowplaying.engine.live import LiveHub
from nowplaying.engine.pause import AppPause
from nowplaying.engine.reads import Reads
from nowplaying.engine.schedule import Schedule
from nowplaying.engine.snapshot import Status
from nowplaying.models import QUOTA_EXCEEDED, NowPlaying, PlayedItem
from nowplaying.sources.base import RateLimited
from nowplaying.store import Account, Pause

pytestmark = pytest.mark.anyio
HOURS = 3600.0


class MemoryPauses:
    def __init__(self) -> None:
        self.pause: Pause | None = None

    async def get_pause(self) -> Pause | None:
        return self.pause

    async def set_pause(self, pause: Pause) -> None:
        self.pause = pause


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
