"""The live engine on a fake clock: one poll serves everyone, the schedule follows the music."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator

import pytest
from harness.engine import FakeSpotify, Grants, MemoryPauses, make_hub, subscribers, track
from harness.helpers import reads_of

from nowplaying.clock import FakeClock
from nowplaying.engine.live import LiveHub, Snapshot, Status, progress_at
from nowplaying.engine.schedule import Schedule
from nowplaying.models import Kind, NowPlaying
from nowplaying.sources.spotify.errors import InvalidGrant, RateLimited, SpotifyUnavailable

pytestmark = pytest.mark.anyio


@pytest.fixture
async def hub(spotify: FakeSpotify, clock: FakeClock) -> AsyncIterator[LiveHub]:
    h = LiveHub(
        reads_of(spotify.fetch), clock, schedule=Schedule(poll_seconds=5.0, rng=random.Random(1))
    )
    yield h
    await h.close()


async def test_one_poll_serves_many_requests(hub: LiveHub, spotify: FakeSpotify) -> None:
    """100 concurrent requests for one account cost one upstream call."""
    snaps = await asyncio.gather(*(hub.current("a") for _ in range(100)))
    assert spotify.calls == 1
    assert len({s.version for s in snaps if s}) == 1


async def test_one_poll_serves_many_subscribers(
    hub: LiveHub, spotify: FakeSpotify, clock: FakeClock
) -> None:
    """200 SSE viewers of one account: calls per minute are what one viewer costs."""
    async with subscribers(hub, "a", 200) as queues:
        await clock.advance(60, step=0.5)
        calls_for_200 = spotify.calls
        assert all(not q.empty() for q in queues)
    assert hub.counts["polls"] == calls_for_200
    # The same minute with one viewer, measured on a clock, account and hub of its own.
    one_clock = FakeClock()
    one_spotify = FakeSpotify(one_clock)
    one_hub = LiveHub(
        reads_of(one_spotify.fetch),
        one_clock,
        schedule=Schedule(poll_seconds=5.0, rng=random.Random(1)),
    )
    try:
        async with subscribers(one_hub, "a", 1):
            await one_clock.advance(60, step=0.5)
    finally:
        await one_hub.close()
    # a minute of 5 s polls plus track ends; a poller that stopped or polled once falls short
    assert 60 / 5 <= one_spotify.calls <= 15
    assert calls_for_200 == one_spotify.calls


async def test_poll_lands_at_predicted_track_end(
    hub: LiveHub, spotify: FakeSpotify, clock: FakeClock
) -> None:
    """With 2 s left in a track, the next poll comes at the end (+margin), not 5 s later."""
    spotify.started = clock.now() - 18.0  # 2 s left of "one"
    await hub.current("a")
    assert spotify.calls == 1
    await clock.advance(2.2)
    assert spotify.calls == 1
    await clock.advance(0.2)
    assert spotify.calls == 2
    snap = await hub.current("a")
    assert snap and snap.playing and snap.playing.item and snap.playing.item.title == "two"


async def test_skip_is_seen_within_poll_interval(
    hub: LiveHub, spotify: FakeSpotify, clock: FakeClock
) -> None:
    """A skip mid-track is published at the next regular poll (<= poll_seconds)."""
    async with subscribers(hub, "a", 1) as (queue,):
        await clock.advance(1)
        first = queue.get_nowait()
        assert first.playing and first.playing.item and first.playing.item.title == "one"
        spotify.skip()
        await clock.advance(5)
        changed = queue.get_nowait()
        assert changed.playing and changed.playing.item and changed.playing.item.title == "two"
        assert first.version < changed.version <= int(clock.now() * 1000)  # ids: the clock in ms


async def test_unchanged_state_is_not_republished(
    hub: LiveHub, spotify: FakeSpotify, clock: FakeClock
) -> None:
    """Polls that find the same track publish nothing new."""
    spotify.tracks = [track("long", 600)]
    async with subscribers(hub, "a", 1) as (queue,):
        await clock.advance(1)
        queue.get_nowait()
        await clock.advance(30)
        assert queue.empty()
        assert spotify.calls >= 6


async def test_pause_and_nothing_playing_are_published(
    hub: LiveHub, spotify: FakeSpotify, clock: FakeClock
) -> None:
    """Pausing and stopping each reach subscribers as a change."""
    async with subscribers(hub, "a", 1) as (queue,):
        await clock.advance(1)
        queue.get_nowait()
        spotify.playing = False
        await clock.advance(5)
        paused = queue.get_nowait()
        assert paused.playing and not paused.playing.is_playing and paused.playing.item
        spotify.stopped = True
        await clock.advance(5)
        nothing = queue.get_nowait()
        assert nothing.playing and not nothing.playing.active


async def test_idle_account_backs_off_to_30s(
    hub: LiveHub, spotify: FakeSpotify, clock: FakeClock
) -> None:
    """While nothing plays, polls thin out to one per 30 s."""
    spotify.stopped = True
    async with subscribers(hub, "a", 1):
        await clock.advance(120, step=1)
        before = spotify.calls
        await clock.advance(120, step=1)
        assert 3 <= spotify.calls - before <= 5  # one per 30 s: 4, give or take the jitter


async def test_rate_limit_pauses_every_account(hub: LiveHub, clock: FakeClock) -> None:
    """A 429 on one account stops polling of all accounts until Retry-After passes."""
    calls: dict[str, int] = {"a": 0, "b": 0}
    limited = [True]

    async def fetch(account_id: str) -> NowPlaying:
        calls[account_id] += 1
        if account_id == "a" and limited[0]:
            limited[0] = False
            raise RateLimited(60, "QUOTA_EXCEEDED")
        return NowPlaying(False, timestamp=clock.now())

    h = LiveHub(reads_of(fetch), clock, schedule=Schedule(poll_seconds=5.0))
    try:
        async with subscribers(h, "b", 1) as (qb,), subscribers(h, "a", 1) as (qa,):
            await clock.advance(0.5)
            b_before = calls["b"]
            assert h.app_pause.until >= clock.now() + 59
            stale = qb.get_nowait()
            assert stale.status is Status.STALE and stale.retry_after and stale.retry_after > 50
            await clock.advance(55, step=1)
            assert calls["b"] == b_before
            assert calls["a"] == 1
            await clock.advance(10, step=1)
            assert calls["a"] >= 2 and calls["b"] > b_before
            assert qa.get_nowait().status is Status.LIVE
    finally:
        await h.close()


async def test_5xx_backs_off_and_serves_stale(
    hub: LiveHub, spotify: FakeSpotify, clock: FakeClock
) -> None:
    """After a good poll, failures keep the last data, marked stale, with growing gaps."""
    await hub.current("a")
    spotify.errors = [SpotifyUnavailable("503")] * 4
    await clock.advance(5.5)
    snap = await hub.current("a")
    assert snap and snap.status is Status.STALE and snap.playing and snap.playing.item
    calls = spotify.calls
    await clock.advance(5, step=0.5)
    # backoff after the first failure (at 5 s) is 2.5-5 s, then 5-10, then 10-20: by 10.5 s
    # exactly one more call, no fewer (the poller goes on) and no more (the gaps grow)
    assert spotify.calls - calls == 1
    await clock.advance(60, step=1)
    assert (await hub.current("a")).status is Status.LIVE  # type: ignore[union-attr]


async def test_first_poll_failure_has_no_data(hub: LiveHub, spotify: FakeSpotify) -> None:
    """With no data at all, a failure yields a stale snapshot without playing."""
    spotify.errors = [SpotifyUnavailable("timeout")]
    snap = await hub.current("a")
    assert snap is not None and snap.status is Status.STALE and snap.playing is None


async def test_first_wait_ends_on_the_clock(clock: FakeClock) -> None:
    """Spotify hanging on the first poll: a request waits ``first_wait`` seconds of the clock,
    not fewer, and then gets what is known (nothing); the poll's answer still serves later."""
    answer = asyncio.Event()
    spotify = FakeSpotify(clock)

    async def hanging(account_id: str) -> NowPlaying:
        await answer.wait()
        return await spotify.fetch(account_id)

    hub = LiveHub(reads_of(hanging), clock, schedule=Schedule(rng=random.Random(1)), first_wait=8.0)
    try:
        request = asyncio.create_task(hub.current("a"))
        await clock.advance(7.9)
        assert not request.done()
        await clock.advance(0.1)
        assert request.done()
        assert request.result() is None
        answer.set()
        await clock.advance(0)
        snap = await hub.current("a")  # fresh now: answered without waiting on the clock
        assert snap is not None and snap.status is Status.LIVE and spotify.calls == 1
    finally:
        await hub.close()


async def test_revoked_grant_stops_polling(
    hub: LiveHub, spotify: FakeSpotify, clock: FakeClock
) -> None:
    """invalid_grant publishes reconnect and the poller ends for good."""
    async with subscribers(hub, "a", 1) as (queue,):
        spotify.errors = [InvalidGrant("Refresh token revoked")]
        await clock.advance(1)
        assert queue.get_nowait().grant_gone
        await clock.advance(60, step=1)
        assert spotify.calls == 1
        assert not hub.polling("a")
    snap = await hub.current("a")
    assert snap and snap.grant_gone
    assert spotify.calls == 1


async def test_poller_stops_when_last_viewer_leaves(
    hub: LiveHub, spotify: FakeSpotify, clock: FakeClock
) -> None:
    """No viewers and no requests for a minute: polling stops; a new viewer restarts it."""
    async with subscribers(hub, "a", 3):
        await clock.advance(10)
        assert hub.polling("a")
    await clock.advance(90, step=1)
    assert not hub.polling("a")
    calls = spotify.calls
    await clock.advance(120, step=5)
    assert spotify.calls == calls
    await hub.current("a")
    assert hub.polling("a") and spotify.calls == calls + 1


async def test_forget_tells_viewers_and_stops(hub: LiveHub, clock: FakeClock) -> None:
    """Forgetting an account (logout) stops its poller and tells its viewers."""
    async with subscribers(hub, "a", 1) as (queue,):
        await clock.advance(1)
        queue.get_nowait()
        await hub.forget("a")
        assert queue.get_nowait().grant_gone
        assert not hub.polling("a")


def test_progress_extrapolates_only_while_playing() -> None:
    """Progress moves with time while playing, stays while paused, caps at the duration."""
    it = track("x", 10)
    playing = NowPlaying(True, Kind.TRACK, it, 2000, timestamp=100.0)
    assert progress_at(playing, 103.0) == 5000
    assert progress_at(playing, 200.0) == 10000
    paused = NowPlaying(False, Kind.TRACK, it, 2000, timestamp=100.0)
    assert progress_at(paused, 103.0) == 2000


def test_snapshot_json_marks_stale_and_reconnect(clock: FakeClock) -> None:
    """The JSON for stale data carries stale: true; reconnect is an error object."""
    np = NowPlaying(True, Kind.TRACK, track("x"), 0, timestamp=clock.now())
    assert Snapshot(np, Status.STALE, 1).to_json(clock.now())["stale"] is True
    assert "stale" not in Snapshot(np, Status.LIVE, 1).to_json(clock.now())
    assert Snapshot.reconnect(1).to_json(0) == {"error": "reconnect_required"}


async def test_unexpected_error_is_logged_reported_stale_and_survived(
    started_hub: LiveHub, spotify: FakeSpotify, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A poller meeting an error nobody expected logs its traceback, tells viewers the data is
    stale, backs off and keeps polling."""
    async with subscribers(started_hub, "a", 1) as (queue,):
        await clock.advance(1)
        assert queue.get_nowait().status is Status.LIVE
        spotify.errors = [RuntimeError("a bug")]
        with caplog.at_level(logging.ERROR, logger="nowplaying.engine.live"):
            await clock.advance(5)
        stale = queue.get_nowait()
        assert stale.status is Status.STALE and stale.playing is not None
        assert started_hub.counts["crashes"] == 1
        crash = [r for r in caplog.records if r.exc_info]
        assert len(crash) == 1 and crash[0].exc_info and crash[0].exc_info[0] is RuntimeError
        calls = spotify.calls
        await clock.advance(30, step=1)
        assert started_hub.polling("a")
        assert spotify.calls >= calls + 3  # it kept polling (a dead poller makes none)
        assert queue.get_nowait().status is Status.LIVE


async def test_grant_made_elsewhere_is_picked_up(
    started_hub: LiveHub, spotify: FakeSpotify, clock: FakeClock, grants: Grants
) -> None:
    """After a revoke the poller asks the store, not Spotify; a new grant is live within one
    check, for the viewers who stayed."""
    async with subscribers(started_hub, "a", 1) as (queue,):
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
    started_hub: LiveHub, spotify: FakeSpotify, clock: FakeClock, grants: Grants
) -> None:
    """Nobody watched while the grant was renewed: the next request restarts the check."""
    spotify.errors = [InvalidGrant("revoked")]
    snap = await started_hub.current("a")
    assert snap and snap.grant_gone
    await clock.advance(120, step=5)  # nobody watches: the poller stops
    assert not started_hub.polling("a")
    grants.ready["a"] = True
    assert (await started_hub.current("a")) is not None
    await clock.advance(1)
    snap = started_hub.peek("a")
    assert snap and snap.status is Status.LIVE


async def test_restart_keeps_viewers_without_a_reconnect_flash(
    started_hub: LiveHub, spotify: FakeSpotify, clock: FakeClock
) -> None:
    """A new grant (restart) polls at once; viewers see live data, never a reconnect."""
    async with subscribers(started_hub, "a", 2) as queues:
        await clock.advance(1)
        for q in queues:
            q.get_nowait()
        calls = spotify.calls
        spotify.skip()
        await started_hub.restart("a")
        await clock.advance(0.1)
        assert spotify.calls == calls + 1
        for q in queues:
            snap = q.get_nowait()
            assert snap.status is Status.LIVE
            assert snap.playing and snap.playing.item and snap.playing.item.title == "two"


async def test_forget_with_viewers_tells_them_and_waits_for_a_new_grant(
    started_hub: LiveHub, spotify: FakeSpotify, clock: FakeClock, grants: Grants
) -> None:
    """Disconnect: viewers are told at once; if the owner connects again they see it live."""
    async with subscribers(started_hub, "a", 1) as (queue,):
        await clock.advance(1)
        first = queue.get_nowait()
        await started_hub.forget("a")
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
