"""The adaptive schedule: watched accounts polled as often as the budget allows, fairly, within
it; idle-but-watched accounts stay responsive; nobody watching, no calls. Counts on the fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from harness.helpers import reads_of, sim_client

from nowplaying.clock import FakeClock
from nowplaying.coord.link import RedisLink
from nowplaying.coord.redis import RedisCoordinator
from nowplaying.engine.fanout import Subscription
from nowplaying.engine.live import LiveHub
from nowplaying.engine.schedule import YIELD_SECONDS, Plan, Schedule
from nowplaying.models import Item, Kind, NowPlaying
from nowplaying.simulator import Simulator
from nowplaying.simulator.catalog import track
from nowplaying.sources.budget import CallBudget

pytestmark = pytest.mark.anyio
SIM = "http://sim.test"


def playing(remaining_s: float | None, *, active: bool = True) -> NowPlaying:
    duration = 200_000
    item = Item(Kind.TRACK, "t", ("a",), None, None, None, duration, uri="spotify:track:t")
    if not active:
        return NowPlaying(is_playing=False, timestamp=0.0)
    progress = None if remaining_s is None else duration - int(remaining_s * 1000)
    return NowPlaying(True, Kind.TRACK, item, progress, 0.0)


# -- the policy ----------------------------------------------------------------------------------


def test_share_is_clamped_between_floor_and_ceiling() -> None:
    """A generous budget polls at the floor, a starved one at the ceiling, else at the share."""
    schedule = Schedule(floor=1.0, ceiling=30.0)
    assert schedule.delay(playing(100), 0, share=0.2) == 1.0
    assert schedule.delay(playing(100), 0, share=7.5) == 7.5
    assert schedule.delay(playing(100), 0, share=300) == 30.0


def test_idle_account_keeps_the_budget_cadence() -> None:
    """Nothing playing for 20 polls: still the share, not the fixed schedule's 30 s backoff."""
    schedule = Schedule(floor=1.0, ceiling=30.0)
    assert schedule.delay(playing(None, active=False), 20, share=1.2) == 1.2
    assert schedule.delay(playing(None, active=False), 20) == 30.0  # the fixed schedule


def test_predicted_track_end_keeps_its_own_poll() -> None:
    """2 s left, a 6 s share: the next poll is at the end plus the margin."""
    schedule = Schedule(floor=1.0, ceiling=30.0, end_margin=0.3)
    assert schedule.delay(playing(2.0), 0, share=6.0) == pytest.approx(2.3)


# -- the engine against the simulator's limits ---------------------------------------------------


@dataclass
class Scene:
    clock: FakeClock
    sim: Simulator
    hub: LiveHub
    budget: CallBudget

    def calls(self, user: str) -> int:
        return self.sim.calls[f"currently-playing:{user}"]


@contextlib.asynccontextmanager
async def scene(
    clock: FakeClock,
    users: int,
    *,
    per_window: int = 60,
    sim_window: int | None = None,
    coord: RedisCoordinator | None = None,
) -> AsyncIterator[Scene]:
    sim = Simulator(clock=clock)
    sim.limits.configure(window_calls=sim_window, daily_quota=None)
    tokens = {}
    for i in range(users):
        sim.add_user(f"u{i}", f"U{i}")
        sim.player(f"u{i}").set_gaps(0)
        tokens[f"u{i}"] = sim.grant(f"u{i}").access_token
    ledger = coord.ledger() if coord is not None else None
    budget = CallBudget(clock, per_window=per_window, per_day=10**7, ledger=ledger)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app)) as http:
        client = sim_client(http, clock, base=SIM, budget=budget)

        async def fetch(account: str) -> NowPlaying:
            return await client.currently_playing(tokens[account])

        hub = LiveHub(reads_of(fetch), clock, budget=budget, coord=coord)
        await hub.start()
        try:
            yield Scene(clock, sim, hub, budget)
        finally:
            await hub.close()


async def watch(stack: contextlib.AsyncExitStack, hub: LiveHub, users: int) -> None:
    """One viewer on each of the first ``users`` accounts, until ``stack`` closes."""
    for i in range(users):
        await stack.enter_async_context(hub.subscribe(f"u{i}"))


async def test_one_watched_account_polled_at_the_floor(clock: FakeClock) -> None:
    """A generous budget: one poll per second while watched (plus track ends), no more."""
    async with scene(clock, 1) as sc, sc.hub.subscribe("u0"):
        await clock.advance(0.5)
        before = sc.calls("u0")
        await clock.advance(60, step=0.1)
        polls = sc.calls("u0") - before
        assert 60 <= polls <= 62  # 60 at the floor, and a track end may fall in the minute


async def test_idle_listener_with_a_viewer_is_seen_starting_within_the_floor(
    clock: FakeClock,
) -> None:
    """Stopped for 2 minutes while watched: still polled every second, start seen within 1 s."""
    async with scene(clock, 1) as sc, sc.hub.subscribe("u0") as queue:
        await clock.advance(0.5)
        sc.sim.player("u0").stop()
        await clock.advance(120, step=0.1)
        before = sc.calls("u0")
        await clock.advance(10, step=0.1)
        assert sc.calls("u0") - before == 10  # no idle backoff
        sc.sim.player("u0").play(3, 0)
        started = clock.now()
        while not queue.empty():
            queue.get_nowait()
        await clock.advance(1.0, step=0.05)
        snap = queue.get_nowait()
        assert snap.playing is not None and snap.playing.active
        assert clock.now() - started <= 1.0


async def test_nobody_watching_no_calls(clock: FakeClock) -> None:
    """The viewer leaves: after the watch window nothing is polled at all."""
    async with scene(clock, 1) as sc:
        async with sc.hub.subscribe("u0"):
            await clock.advance(5, step=0.1)
        await clock.advance(sc.hub.watch_ttl + 2, step=0.5)
        before = sc.calls("u0")
        assert before > 5  # it did poll while watched
        await clock.advance(600, step=1)
        assert sc.calls("u0") == before
        assert (await sc.budget.usage()).accounts == 0  # its share was handed back


async def test_five_accounts_share_a_tight_budget_fairly_and_within_it(clock: FakeClock) -> None:
    """Budget 30 / 30 s = Spotify's window: 0 window 429s in 5 minutes, each account its fifth."""
    async with (
        scene(clock, 5, per_window=30, sim_window=30) as sc,
        contextlib.AsyncExitStack() as stack,
    ):
        await watch(stack, sc.hub, 5)
        await clock.advance(300, step=0.1)
        assert sc.sim.limits.counts["window_429"] == 0
        assert sc.sim.limits.max_in_window("cid") <= 30
        per_account = [sc.calls(f"u{i}") for i in range(5)]
        # 300 s at 27 calls per 30 s (the budget less its reserve), shared five ways: ~54 each
        assert all(45 <= n <= 62 for n in per_account), per_account
        assert max(per_account) - min(per_account) <= 6, per_account


async def test_calls_do_not_grow_with_viewers(clock: FakeClock) -> None:
    """One viewer or a thousand: the same upstream calls per minute (within one)."""
    counts = []
    for viewers in (1, 1000):
        async with scene(FakeClock(), 1) as sc, contextlib.AsyncExitStack() as stack:
            for _ in range(viewers):
                await stack.enter_async_context(sc.hub.subscribe("u0"))
            await sc.clock.advance(0.5)
            before = sc.calls("u0")
            await sc.clock.advance(120, step=0.25)
            counts.append(sc.calls("u0") - before)
    assert counts[0] >= 100  # it polled at the floor, not at all
    assert abs(counts[0] - counts[1]) <= 2  # two minutes: one call per minute


async def test_budget_above_the_real_window_settles_below_it(clock: FakeClock) -> None:
    """Budget 60, Spotify's window 30: after the first 429, at most 3 more in 10 minutes."""
    async with (
        scene(clock, 5, per_window=60, sim_window=30) as sc,
        contextlib.AsyncExitStack() as stack,
    ):
        await watch(stack, sc.hub, 5)
        await clock.advance(600, step=0.25)
        refused = sc.sim.limits.counts["window_429"]
        assert 1 <= refused <= 4
        assert await sc.budget.per_window() < 30


def poll_times(sim: Simulator, user: str, since: float) -> list[float]:
    """When the simulator answered ``user``'s currently-playing calls, from ``since`` on."""
    key = f"currently-playing:{user}"
    return [at for name, at in sim.call_times if name == key and at >= since]


async def test_regular_polls_of_five_accounts_are_spread_evenly(clock: FakeClock) -> None:
    """Five watched accounts on the default budget, nothing skipped or ending: each account is
    polled every share exactly (the longest gap is the share), and the five accounts' polls
    take turns a fifth of a share apart instead of meeting and waiting for room."""
    users = 5
    async with scene(clock, users) as sc, contextlib.AsyncExitStack() as stack:
        for i in range(users):
            sc.sim.player(f"u{i}").seek(10_000)  # minutes from any track's end
        await watch(stack, sc.hub, users)
        await clock.advance(40, step=0.05)  # on their slots, the first polls out of the window
        since = clock.now()
        await clock.advance(60, step=0.05)
        every = 30.5 * users / 53  # (60 less 6 held, less 1 of slack) calls per 30.5 s
        per_user = [poll_times(sc.sim, f"u{i}", since) for i in range(users)]
        gaps = [round(b - a, 2) for times in per_user for a, b in itertools.pairwise(times)]
        assert len(gaps) >= users * 19
        assert max(gaps) <= every + 0.05 and min(gaps) >= every - 0.05, gaps
        merged = sorted(t for times in per_user for t in times)
        turns = [b - a for a, b in itertools.pairwise(merged)]
        assert min(turns) >= every / users - 0.05, sorted(turns)[:5]
        assert sc.hub.counts["polls_yielded"] == 0


async def test_a_poll_costs_five_redis_round_trips(clock: FakeClock, flushed: str) -> None:
    """One account polled through the Redis ledger and coordinator: three round trips of the
    budget per regular poll (what was learned, the spend that checks room and counts the call,
    one pipeline that marks the account polled and reads its share), two of the poller (the
    lease, the app-wide pause), and the watch mark every lease renewal. Before this, the budget
    alone made eight (a room check of two, the spend's two, four for the share)."""
    link = RedisLink(flushed, clock=clock)
    trips: list[str] = []
    real = link.call

    async def counted(op: Any, fallback: Any) -> Any:
        trips.append(sys._getframe(1).f_code.co_qualname)  # who made the round trip
        return await real(op, fallback)

    link.call = counted  # type: ignore[method-assign]
    coord = RedisCoordinator(link)
    try:
        async with scene(clock, 1, coord=coord) as sc, sc.hub.subscribe("u0"):
            sc.sim.player("u0").seek(10_000)
            await _advance_with_redis(clock, 5)
            trips.clear()
            polls = sc.hub.counts["polls"]
            await _advance_with_redis(clock, 30)
            polls = sc.hub.counts["polls"] - polls
            assert polls == 30  # one account: polled at the floor
            budget = [t for t in trips if t.startswith("RedisLedger.")]
            assert len(budget) == 3 * polls, sorted(set(trips))
            renewals = 30 / (coord.renew_every or 1)
            assert len(trips) == 5 * polls + renewals, sorted(set(trips))
    finally:
        await link.close()


async def _advance_with_redis(clock: FakeClock, seconds: float) -> None:
    """Move the fake clock in steps, each time letting the poller finish its real Redis I/O
    (until it sleeps on the clock again, bounded) before time moves on."""
    end = clock.now() + seconds
    while clock.now() < end - 1e-9:
        await clock.advance(0.05, step=0.05)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if clock.sleepers >= 1:
                break
            await asyncio.sleep(0.001)  # real Redis I/O in flight: no event tells its end
        else:
            raise AssertionError("the poller did not get back to sleep")


# -- known moments: the predicted end and the re-check after a skip ------------------------------


def other(title: str, remaining_s: float) -> NowPlaying:
    duration = 200_000
    item = Item(Kind.TRACK, title, ("a",), None, None, None, duration, uri=f"spotify:track:{title}")
    return NowPlaying(True, Kind.TRACK, item, duration - int(remaining_s * 1000), 0.0)


def known_after(plan: Plan, *polls: tuple[str, float, float]) -> list[tuple[float, bool]]:
    """Each poll (title seen, seconds left of it, when) through a 6 s share: (next poll, known)."""
    schedule = Schedule(floor=1.0, ceiling=30.0, end_margin=0.3)
    out = []
    for title, left, now in polls:
        out.append((round(schedule.played(plan, other(title, left), now), 3), plan.known))
    return out


def test_the_poll_at_the_predicted_end_is_a_known_moment() -> None:
    """2 s left, a 6 s share: the next poll is the end's, marked known; 100 s left: regular."""
    plan = Plan(share=6.0)
    assert known_after(plan, ("A", 2.0, 96.0), ("A", 100.0, 96.0)) == [
        (98.3, True),
        (102.0, False),
    ]
    assert plan.end_poll == pytest.approx(196.3)


def test_a_skip_is_re_checked_at_the_floor_as_a_known_moment() -> None:
    """A regular poll sees another track long before the predicted end: one re-check a floor
    later, known; the poll after it is regular again, on the grid (at least half a share on)."""
    polls = known_after(Plan(share=6.0), ("A", 100.0, 0.0), ("B", 150.0, 6.0), ("B", 149.0, 7.0))
    assert polls[1:] == [(7.0, True), (12.0, False)]


def test_no_re_check_without_room_in_the_reserve() -> None:
    """The reserve is spent (``spare`` False): a skip is followed by the regular poll only, so a
    run of skips cannot eat the regular polls' share."""
    polls = known_after(
        Plan(share=6.0, spare=False), ("A", 100.0, 0.0), ("B", 150.0, 6.0), ("B", 149.0, 12.0)
    )
    assert polls[1:] == [(12.0, False), (18.0, False)]


def test_a_natural_end_is_no_skip() -> None:
    """The poll at the end sees the next track: no re-check, the grid again."""
    polls = known_after(Plan(share=6.0), ("A", 2.0, 0.0), ("B", 180.0, 2.3))
    assert polls == [(2.3, True), (6.0, False)]


def test_a_regular_poll_without_room_never_passes_the_predicted_end() -> None:
    """No room for a regular poll: tried again shortly, and at the end at the latest, known."""
    schedule = Schedule(floor=1.0, ceiling=30.0, end_margin=0.3)
    plan = Plan(share=6.0)
    schedule.played(plan, other("A", 10.0), 0.0)
    polls = [(round(schedule.yielded(plan, now), 3), plan.known) for now in (6.0, 10.2)]
    assert polls == [(6.0 + YIELD_SECONDS, False), (10.3, True)]


async def test_the_predicted_end_poll_is_never_delayed_by_regular_polls(
    clock: FakeClock,
) -> None:
    """Five accounts playing 20 s tracks on a 30-call window, regular polls filling it: every
    natural end reaches the viewer at the end's poll (end + margin), none waits for room."""
    users, track_s, minutes = 5, 20, 5
    async with (
        scene(clock, users, per_window=30, sim_window=30) as sc,
        contextlib.AsyncExitStack() as stack,
    ):
        start = clock.now()
        seen: dict[str, list[tuple[float, str]]] = {}
        for i in range(users):
            user = f"u{i}"
            songs = [track(f"{user}-{n}", [user], "album", track_s * 1000) for n in range(4)]
            sc.sim.player(user).set_playlist(songs)
            sc.sim.player(user).seek(i * 3_700)  # the ends spread over the window
            sub = await stack.enter_async_context(sc.hub.subscribe(user))
            seen[user] = []
            stack.enter_context(_recording(sub, clock, seen[user]))
        await clock.advance(minutes * 60, step=0.05)
        late = []
        ends = 0
        for i in range(users):
            first_end = start + track_s - i * 3.7
            for k in range(1, minutes * 60 // track_s - 1):
                end = first_end + (k - 1) * track_s
                title = f"u{i}-{k % 4}"
                arrived = next(at for at, t in seen[f"u{i}"] if t == title and at >= end - 1)
                ends += 1
                if arrived - end > sc.hub.schedule.end_margin + 0.1:
                    late.append(round(arrived - end, 2))
        assert ends >= users * 13
        assert late == []
        # the window as full as regular polls may fill it (26 of 30 counted over 30.5 s)
        assert sc.sim.limits.max_in_window("cid") >= 25
        assert sc.sim.limits.counts["window_429"] == 0


@contextlib.contextmanager
def _recording(
    sub: Subscription, clock: FakeClock, into: list[tuple[float, str]]
) -> Iterator[None]:
    """Note the time and title of every change ``sub`` receives."""

    async def record() -> None:
        while True:
            snap = await sub.get()
            playing = snap.playing
            if playing is not None and playing.item is not None:
                into.append((clock.now(), playing.item.title))

    task = asyncio.ensure_future(record())
    try:
        yield
    finally:
        task.cancel()
