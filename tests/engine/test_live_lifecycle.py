"""The live engine across its life cycle, on a fake clock: it survives errors nobody expected,
keeps Spotify's pause across a restart, tells the long quota pause apart, and picks up a grant
made again elsewhere without a restart."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator

import pytest
from harness.engine import FakeSpotify, subscribers
from harness.helpers import reads_of

from nowplaying.clock import FakeClock
from nowplaying.coord.base import LocalCoordinator
from nowplaying.engine.live import LiveHub, Status
from nowplaying.engine.pause import AppPause
from nowplaying.engine.schedule import Schedule
from nowplaying.models import QUOTA_EXCEEDED
from nowplaying.sources.spotify.errors import InvalidGrant, RateLimited
from nowplaying.store import Pause, StoreError

pytestmark = pytest.mark.anyio
HOURS = 3600.0


class MemoryPauses:
    """The pause as the store keeps it; ``fail`` makes every call raise StoreError."""

    def __init__(self) -> None:
        self.pause: Pause | None = None
        self.writes = 0
        self.fail = False

    async def get_pause(self) -> Pause | None:
        if self.fail:
            raise StoreError("down")
        return self.pause

    async def set_pause(self, pause: Pause) -> None:
        if self.fail:
            raise StoreError("down")
        self.writes += 1
        self.pause = pause


class Grants:
    """Whether each account holds a usable grant, as the store would say."""

    def __init__(self) -> None:
        self.ready: dict[str, bool] = {}
        self.checks = 0

    async def __call__(self, account_id: str) -> bool:
        self.checks += 1
        return self.ready.get(account_id, False)


@pytest.fixture
def spotify(clock: FakeClock) -> FakeSpotify:
    return FakeSpotify(clock)


@pytest.fixture
def pauses() -> MemoryPauses:
    return MemoryPauses()


@pytest.fixture
def grants() -> Grants:
    return Grants()


def make_hub(
    spotify: FakeSpotify, clock: FakeClock, pauses: MemoryPauses, grants: Grants | None = None
) -> LiveHub:
    coord = LocalCoordinator()
    return LiveHub(
        reads_of(spotify.fetch),
        clock,
        schedule=Schedule(poll_seconds=5.0, rng=random.Random(1), reconnect_check=5.0),
        pause=AppPause(clock, coord, store=pauses),
        coord=coord,
        ready=grants,
    )


@pytest.fixture
async def hub(
    spotify: FakeSpotify, clock: FakeClock, pauses: MemoryPauses, grants: Grants
) -> AsyncIterator[LiveHub]:
    h = make_hub(spotify, clock, pauses, grants)
    await h.start()
    yield h
    await h.close()


async def test_unexpected_error_is_logged_reported_stale_and_survived(
    hub: LiveHub, spotify: FakeSpotify, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A poller meeting an error nobody expected logs its traceback, tells viewers the data is
    stale, backs off and keeps polling."""
    async with subscribers(hub, "a", 1) as (queue,):
        await clock.advance(1)
        assert queue.get_nowait().status is Status.LIVE
        spotify.errors = [RuntimeError("a bug")]
        with caplog.at_level(logging.ERROR, logger="nowplaying.engine.live"):
            await clock.advance(5)
        stale = queue.get_nowait()
        assert stale.status is Status.STALE and stale.playing is not None
        assert hub.counts["crashes"] == 1
        crash = [r for r in caplog.records if r.exc_info]
        assert len(crash) == 1 and crash[0].exc_info and crash[0].exc_info[0] is RuntimeError
        calls = spotify.calls
        await clock.advance(30, step=1)
        assert hub.polling("a")
        assert spotify.calls >= calls + 3  # it kept polling (a dead poller makes none)
        assert queue.get_nowait().status is Status.LIVE


async def test_quota_pause_is_stored_and_told_apart(
    hub: LiveHub, spotify: FakeSpotify, clock: FakeClock, pauses: MemoryPauses
) -> None:
    """QUOTA_EXCEEDED pauses everything for its hours-long Retry-After, and is stored."""
    async with subscribers(hub, "a", 1) as (queue,):
        await clock.advance(1)
        queue.get_nowait()
        spotify.errors = [RateLimited(5 * HOURS, QUOTA_EXCEEDED)]
        await clock.advance(5)
        assert queue.get_nowait().status is Status.STALE
        calls = spotify.calls
        await clock.advance(600, step=5)
        assert spotify.calls == calls  # nothing during the lockout
    assert hub.pause is not None and hub.pause.quota
    assert pauses.pause == Pause(hub.app_pause.until, QUOTA_EXCEEDED)
    assert hub.app_pause.until == pytest.approx(clock.now() - 600 + 5 * HOURS, abs=6)


async def test_window_429_is_not_the_quota(
    hub: LiveHub, spotify: FakeSpotify, clock: FakeClock, pauses: MemoryPauses
) -> None:
    """A rolling-window 429 (no reason) pauses briefly and is recorded as ``rate_limit``."""
    await hub.current("a")
    spotify.errors = [RateLimited(10)]
    async with subscribers(hub, "a", 1):
        await clock.advance(5)
        assert hub.pause is not None and not hub.pause.quota
        assert pauses.pause is not None and pauses.pause.reason == "rate_limit"
        calls = spotify.calls
        await clock.advance(20, step=1)
        assert spotify.calls > calls  # polling resumed after the 10 s
    assert hub.pause is None


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
        spotify.errors = [RateLimited(30)]
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


async def test_grant_made_elsewhere_is_picked_up(
    hub: LiveHub, spotify: FakeSpotify, clock: FakeClock, grants: Grants
) -> None:
    """After a revoke the poller asks the store, not Spotify; a new grant is live within one
    check, for the viewers who stayed."""
    async with subscribers(hub, "a", 1) as (queue,):
        await clock.advance(1)
        queue.get_nowait()
        spotify.errors = [InvalidGrant("Refresh token revoked")]
        await clock.advance(5)
        assert queue.get_nowait().grant_gone
        calls = spotify.calls
        await clock.advance(60, step=1)
        assert spotify.calls == calls  # no upstream call while the grant is gone
        assert 10 <= grants.checks <= 13  # every 5 s
        grants.ready["a"] = True  # `nowplaying login`, or another instance, stored a new grant
        await clock.advance(5, step=1)
        back = queue.get_nowait()
        assert back.status is Status.LIVE and back.playing is not None
        assert spotify.calls == calls + 1


async def test_reconnect_state_is_rechecked_for_a_new_request(
    hub: LiveHub, spotify: FakeSpotify, clock: FakeClock, grants: Grants
) -> None:
    """Nobody watched while the grant was renewed: the next request restarts the check."""
    spotify.errors = [InvalidGrant("revoked")]
    snap = await hub.current("a")
    assert snap and snap.grant_gone
    await clock.advance(120, step=5)  # nobody watches: the poller stops
    assert not hub.polling("a")
    grants.ready["a"] = True
    assert (await hub.current("a")) is not None
    await clock.advance(1)
    snap = hub.peek("a")
    assert snap and snap.status is Status.LIVE


async def test_restart_keeps_viewers_without_a_reconnect_flash(
    hub: LiveHub, spotify: FakeSpotify, clock: FakeClock
) -> None:
    """A new grant (restart) polls at once; viewers see live data, never a reconnect."""
    async with subscribers(hub, "a", 2) as queues:
        await clock.advance(1)
        for q in queues:
            q.get_nowait()
        calls = spotify.calls
        spotify.skip()
        await hub.restart("a")
        await clock.advance(0.1)
        assert spotify.calls == calls + 1
        for q in queues:
            snap = q.get_nowait()
            assert snap.status is Status.LIVE
            assert snap.playing and snap.playing.item and snap.playing.item.title == "two"


async def test_forget_with_viewers_tells_them_and_waits_for_a_new_grant(
    hub: LiveHub, spotify: FakeSpotify, clock: FakeClock, grants: Grants
) -> None:
    """Disconnect: viewers are told at once; if the owner connects again they see it live."""
    async with subscribers(hub, "a", 1) as (queue,):
        await clock.advance(1)
        first = queue.get_nowait()
        await hub.forget("a")
        gone = queue.get_nowait()
        assert gone.grant_gone and gone.version > first.version
        calls = spotify.calls
        await clock.advance(30, step=1)
        assert spotify.calls == calls
        grants.ready["a"] = True
        await clock.advance(6, step=1)
        back = queue.get_nowait()
        assert back.status is Status.LIVE and back.version > gone.version


async def test_versions_keep_growing_across_a_restart(
    spotify: FakeSpotify, clock: FakeClock, pauses: MemoryPauses
) -> None:
    """A restarted process numbers its first state above the old process's last one, so a
    viewer's Last-Event-ID never matches a different state."""
    old = make_hub(spotify, clock, pauses)
    async with subscribers(old, "a", 1) as (queue,):
        for _ in range(5):
            spotify.skip()
            await clock.advance(5)
        last = queue.get_nowait().version
    await old.close()
    await clock.advance(1)
    new = make_hub(spotify, clock, pauses)
    try:
        first = await new.current("a")
        assert first is not None and first.version > last
    finally:
        await new.close()
