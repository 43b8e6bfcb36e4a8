"""The adaptive schedule: watched accounts polled as often as the budget allows, fairly, within
it; idle-but-watched accounts stay responsive; nobody watching, no calls. Counts on the fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from harness.helpers import reads_of, sim_client

from nowplaying.clock import FakeClock
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
    clock: FakeClock, users: int, *, per_window: int = 60, sim_window: int | None = None
) -> AsyncIterator[Scene]:
    sim = Simulator(clock=clock)
    sim.limits.configure(window_calls=sim_window, daily_quota=None)
    tokens = {}
    for i in range(users):
        sim.add_user(f"u{i}", f"U{i}")
        sim.player(f"u{i}").set_gaps(0)
        tokens[f"u{i}"] = sim.grant(f"u{i}").access_token
    budget = CallBudget(clock, per_window=per_window, per_day=10**7)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app)) as http:
        client = sim_client(http, clock, base=SIM, budget=budget)

        async def fetch(account: str) -> NowPlaying:
            return await client.currently_playing(tokens[account])

        hub = LiveHub(reads_of(fetch), clock, budget=budget)
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
    assert known_after(plan, ("A", 2.0, 100.0), ("A", 100.0, 100.0)) == [
        (102.3, True),
        (106.0, False),
    ]
    assert plan.end_poll == pytest.approx(200.3)


def test_a_skip_is_re_checked_at_the_floor_as_a_known_moment() -> None:
    """A regular poll sees another track long before the predicted end: one re-check a floor
    later, known; the poll after it is regular again."""
    polls = known_after(Plan(share=6.0), ("A", 100.0, 0.0), ("B", 150.0, 6.0), ("B", 149.0, 7.0))
    assert polls[1:] == [(7.0, True), (13.0, False)]


def test_a_natural_end_is_no_skip() -> None:
    """The poll at the end sees the next track: no re-check, the share again."""
    polls = known_after(Plan(share=6.0), ("A", 2.0, 0.0), ("B", 180.0, 2.3))
    assert polls == [(2.3, True), (8.3, False)]


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
        assert sc.hub.counts["polls_yielded"] > 0  # the window was full: regular polls yielded
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
