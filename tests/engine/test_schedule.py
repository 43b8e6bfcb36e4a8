"""The adaptive schedule: watched accounts polled as often as the budget allows, fairly, within
it; idle-but-watched accounts stay responsive; nobody watching, no calls. Counts on the fake clock.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from harness.helpers import reads_of, sim_client

from nowplaying.clock import FakeClock
from nowplaying.engine.live import LiveHub
from nowplaying.engine.schedule import Schedule
from nowplaying.models import Item, Kind, NowPlaying
from nowplaying.simulator import Simulator
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
