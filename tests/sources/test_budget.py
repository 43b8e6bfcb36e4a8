"""The call budget: never past the window or the day, AIMD learning, fair shares, Redis-shared."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from harness.app import Env
from harness.helpers import sim_client
from harness.live_server import free_port
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from nowplaying.clock import FakeClock
from nowplaying.coord.ledger import DAY, LocalLedger
from nowplaying.coord.redis import RedisCoordinator
from nowplaying.simulator import Simulator
from nowplaying.simulator.limits import max_in_window
from nowplaying.sources.budget import CallBudget, OverBudget, rate_budget, regular_poll
from nowplaying.sources.spotify.client import SpotifyClient
from nowplaying.sources.spotify.errors import RateLimited

pytestmark = pytest.mark.anyio


async def spend_all(budget: CallBudget, n: int) -> list[float]:
    """Start ``n`` calls at once; the clock times they were let through."""
    return list(await asyncio.gather(*(budget.spend() for _ in range(n))))


async def test_never_more_than_the_window_in_any_30s(clock: FakeClock) -> None:
    """60 calls wanted at once through a 10-per-30 s budget: 10 per window, all served."""
    budget = CallBudget(clock, per_window=10, per_day=1000, margin=0)
    task = asyncio.ensure_future(spend_all(budget, 60))
    await clock.advance(200, step=1)
    times = sorted(await task)
    assert len(times) == 60
    assert max_in_window(times, 30) == 10
    # and as fast as it allows: the 60th call goes in the 6th window
    assert times[-1] - times[0] == pytest.approx(150, abs=1)


async def test_regular_polls_leave_the_reserve_to_known_moments(clock: FakeClock) -> None:
    """20 regular polls wanted at once through a 10-per-30 s budget: 9 in the window, the 10th
    slot held (a regular poll's take() finds no room and counts nothing); a known moment's call
    (outside regular_poll) takes it at once."""
    budget = CallBudget(clock, per_window=10, per_day=1000, margin=0)
    assert budget.regular_limit(10) == 9
    with regular_poll():
        regular = asyncio.ensure_future(spend_all(budget, 20))
    await clock.advance(1, step=0.25)
    assert budget.spent == 9
    assert await budget.take() is None
    assert budget.spent == 9
    known = await budget.spend(max_wait=0)  # OverBudget if it had to wait
    assert known == clock.now()
    await clock.advance(100, step=1)
    times = sorted(await regular)
    assert max_in_window(times, 30) == 9


async def test_margin_keeps_calls_apart_a_little_longer(clock: FakeClock) -> None:
    """With the default half-second margin, the 11th call waits 30.5 s, not 30."""
    budget = CallBudget(clock, per_window=10, per_day=1000)
    task = asyncio.ensure_future(spend_all(budget, 11))
    await clock.advance(60, step=0.25)
    times = sorted(await task)
    assert times[10] - times[0] == pytest.approx(30.5, abs=0.25)


@given(st.lists(st.floats(min_value=0, max_value=120, allow_nan=False), min_size=1, max_size=40))
@hyp_settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_arrival_pattern_stays_within_the_window(arrivals: list[float]) -> None:
    """Calls arriving at arbitrary moments: at most 5 in any 30 s, and each is served."""

    async def scenario() -> list[float]:
        clock = FakeClock()
        budget = CallBudget(clock, per_window=5, per_day=10_000, margin=0)
        start = clock.now()

        async def call(at: float) -> float:
            await clock.sleep(at)
            return await budget.spend()

        task = asyncio.ensure_future(asyncio.gather(*(call(a) for a in arrivals)))
        await clock.advance(120 + 30 * len(arrivals) / 5 + 31, step=1)
        return [t - start for t in await task]

    times = sorted(asyncio.run(scenario()))
    assert len(times) == len(arrivals)
    assert max_in_window(times, 30) <= 5
    assert all(t >= a - 1e-3 for t, a in zip(times, sorted(arrivals), strict=True))


async def test_day_budget_refuses_until_midnight(clock: FakeClock) -> None:
    """The day's calls spent: OverBudget with Retry-After to UTC midnight, then room again."""
    budget = CallBudget(clock, per_window=100, per_day=3)
    await spend_all(budget, 3)
    with pytest.raises(OverBudget) as caught:
        await budget.spend()
    assert caught.value.retry_after == pytest.approx(DAY)  # FakeClock starts at midnight
    await clock.advance(DAY)
    assert await budget.spend() == clock.now()


async def test_window_429_cuts_multiplicatively_and_probes_back_additively(
    clock: FakeClock,
) -> None:
    """A 429 with 20 calls in the window cuts to 14; +1 per quiet window up to the configured."""
    budget = CallBudget(clock, per_window=20, per_day=10_000)
    started = (await spend_all(budget, 20))[0]
    await budget.refused(started, 5, quota=False)
    assert await budget.per_window() == 14
    await clock.advance(30)
    assert await budget.per_window() == 15
    await clock.advance(30 * 4)
    assert await budget.per_window() == 19
    await clock.advance(30 * 100)
    assert await budget.per_window() == 20  # never above what was configured


async def test_a_429_for_a_call_sent_before_the_cut_is_not_learned_twice(clock: FakeClock) -> None:
    """Several calls in flight all get 429: one cut, not one per call."""
    budget = CallBudget(clock, per_window=20, per_day=10_000)
    times = await spend_all(budget, 20)
    await clock.advance(0.1)
    await budget.refused(times[0], 5, quota=False)
    await budget.refused(times[1], 5, quota=False)
    assert await budget.per_window() == 14
    await clock.advance(31)  # the 20 calls have left the window
    later = await spend_all(budget, 10)
    await budget.refused(later[-1], 5, quota=False)
    assert await budget.per_window() == 7  # a 429 after the cut cuts again: 0.7 x 10


async def test_quota_blocks_every_call_and_shrinks_the_day(clock: FakeClock) -> None:
    """QUOTA_EXCEEDED: no call until Retry-After (OverBudget at once), day budget shrunk."""
    budget = CallBudget(clock, per_window=50, per_day=1000)
    times = await spend_all(budget, 40)
    await budget.refused(times[-1], 7200, quota=True)
    with pytest.raises(OverBudget) as caught:
        await budget.spend()
    assert caught.value.retry_after == pytest.approx(7200)
    usage = await budget.usage()
    assert usage.per_day == 28  # 0.7 x the 40 spent today
    assert usage.blocked_until == pytest.approx(clock.now() + 7200)
    await clock.advance(7200)
    with pytest.raises(OverBudget) as spent:
        await budget.spend()  # 40 spent today, the day now holds 28: none until midnight
    assert spent.value.retry_after == pytest.approx(DAY - 7200)
    await clock.advance(DAY - 7200)
    assert await budget.spend() == clock.now()


async def test_interval_shares_the_window_fairly(clock: FakeClock) -> None:
    """Each polled account gets 1/n of the window (30.5 s as counted) less the reserve and one
    call of slack, and its own slot on the grid; one stopping frees its share."""
    budget = CallBudget(clock, per_window=30, per_day=10**9)
    assert (await budget.interval("a")).every == pytest.approx(30.5 / 26)
    b = await budget.interval("b")
    assert b.every == pytest.approx(2 * 30.5 / 26)
    assert (b.slot, b.slots) == (1, 2)
    a = await budget.interval("a")
    assert a.every == pytest.approx(2 * 30.5 / 26)
    assert (a.slot, a.slots) == (0, 2)
    await budget.idle("b")
    assert (await budget.interval("a")).every == pytest.approx(30.5 / 26)
    assert (await budget.usage()).accounts == 1


async def test_known_moments_beyond_the_reserve_shrink_the_regular_share(
    clock: FakeClock,
) -> None:
    """Calls outside regular polls (known moments, refreshes) use the reserve first; those
    beyond it come off the regular polls' room, so regular polls and known moments fit the
    window together. With the reserve spent, no room is left for a re-check (``spare``)."""
    budget = CallBudget(clock, per_window=30, per_day=10**9)
    await spend_all(budget, 2)
    share = await budget.interval("a")
    assert share.every == pytest.approx(30.5 / 26)  # 27 less 1 of slack: the reserve holds 2
    assert share.spare  # 2 of the 3 held calls used
    await spend_all(budget, 3)
    share = await budget.interval("a")
    assert share.every == pytest.approx(30.5 / 24)  # 2 beyond the reserve
    assert not share.spare
    with regular_poll():
        await spend_all(budget, 5)  # regular polls' calls do not shrink it
    assert (await budget.interval("a")).every == pytest.approx(30.5 / 24)


async def test_a_regular_poll_takes_room_short_of_one_call(clock: FakeClock) -> None:
    """take() counts a regular poll's call while the window holds fewer than the limit less
    one (no waiting), then answers None and counts nothing; the last call is a known
    moment's, at once."""
    budget = CallBudget(clock, per_window=10, per_day=1000, margin=0)
    taken = [await budget.take() for _ in range(10)]
    assert taken == [clock.now()] * 9 + [None]
    assert budget.spent == 9
    assert await budget.spend(max_wait=0) == clock.now()


async def test_interval_paces_the_day_to_midnight(clock: FakeClock) -> None:
    """With 8,640 calls for the day and 24 h to go: one call per 10 s for the whole app."""
    budget = CallBudget(clock, per_window=60, per_day=8640, reserve=0)
    assert (await budget.interval("a")).every == pytest.approx(10)


async def test_local_ledger_counts(clock: FakeClock) -> None:
    """``used`` reports the window and the day."""
    ledger = LocalLedger()
    budget = CallBudget(clock, per_window=5, per_day=100, ledger=ledger)
    await spend_all(budget, 3)
    await clock.advance(31)
    await spend_all(budget, 2)
    assert await ledger.used(clock.now(), 30) == (2, 5)


# -- the budget at the client, against the simulator's limits ----------------------------------


@pytest.fixture
async def sim_http(clock: FakeClock) -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    sim = Simulator(clock=clock)
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as http:
        yield sim, http


def client_for(http: httpx.AsyncClient, clock: FakeClock, budget: CallBudget) -> SpotifyClient:
    return sim_client(http, clock, budget=budget)


async def test_client_spends_for_token_and_api_calls(
    clock: FakeClock, sim_http: tuple[Simulator, httpx.AsyncClient]
) -> None:
    """A refresh and a read each spend one call; the simulator saw exactly those."""
    sim, http = sim_http
    budget = CallBudget(clock, per_window=10, per_day=100)
    client = client_for(http, clock, budget)
    token = await client.refresh(sim.grant("demo").refresh_token or "")
    await client.currently_playing(token.access_token)
    assert budget.spent == 2
    assert sim.limits.counts["accepted"] == 2


async def test_token_call_waits_for_room_no_longer_than_its_lock_allows(
    clock: FakeClock, sim_http: tuple[Simulator, httpx.AsyncClient]
) -> None:
    """Window full for 30 more seconds: a refresh gives up at once (RateLimited 'budget', nothing
    sent) rather than wait past the refresh lock; a read waits for the room instead."""
    sim, http = sim_http
    budget = CallBudget(clock, per_window=2, per_day=1000, margin=0)
    client = client_for(http, clock, budget)
    grant = sim.grant("demo")
    await spend_all(budget, 2)
    with pytest.raises(RateLimited) as caught:
        await client.refresh(grant.refresh_token or "")
    assert caught.value.reason == "budget"
    assert sim.calls["token"] == 0
    read = asyncio.ensure_future(client.currently_playing(grant.access_token))
    await clock.advance(31, step=0.5)
    assert (await read).is_playing
    assert sim.calls["currently-playing"] == 1


async def test_budget_equal_to_the_real_window_meets_no_429(
    clock: FakeClock, sim_http: tuple[Simulator, httpx.AsyncClient]
) -> None:
    """50 reads wanted at once, budget = Spotify's window (10/30 s): all served, 0 refusals."""
    sim, http = sim_http
    sim.limits.configure(window_calls=10, daily_quota=None)
    client = client_for(http, clock, CallBudget(clock, per_window=10, per_day=1000))
    token = sim.grant("demo").access_token
    task = asyncio.gather(*(client.currently_playing(token) for _ in range(50)))
    await clock.advance(200, step=0.5)
    assert len(await task) == 50
    assert sim.limits.counts["window_429"] == 0
    assert sim.limits.max_in_window("cid") == 10


async def test_budget_above_the_real_window_learns_it(
    clock: FakeClock, sim_http: tuple[Simulator, httpx.AsyncClient]
) -> None:
    """Budget 20, Spotify's window 10: the first 429 cuts the budget to 7, below the real limit."""
    sim, http = sim_http
    sim.limits.configure(window_calls=10, daily_quota=None)
    budget = CallBudget(clock, per_window=20, per_day=1000)
    client = client_for(http, clock, budget)
    token = sim.grant("demo").access_token
    for _ in range(10):
        await client.currently_playing(token)
    with pytest.raises(RateLimited) as caught:
        await client.currently_playing(token)
    assert caught.value.retry_after == 30
    assert await budget.per_window() == 7  # 0.7 x the 10 Spotify counted
    assert sim.limits.counts["window_429"] == 1


async def test_quota_exceeded_shrinks_the_day_and_stops_sending(
    clock: FakeClock, sim_http: tuple[Simulator, httpx.AsyncClient]
) -> None:
    """After QUOTA_EXCEEDED the client sends nothing (RateLimited 'budget') until Retry-After."""
    sim, http = sim_http
    sim.limits.configure(window_calls=None, daily_quota=5)
    budget = CallBudget(clock, per_window=100, per_day=1000)
    client = client_for(http, clock, budget)
    token = sim.grant("demo").access_token
    for _ in range(5):
        await client.currently_playing(token)
    with pytest.raises(RateLimited) as quota:
        await client.currently_playing(token)
    assert quota.value.quota
    with pytest.raises(RateLimited) as held:
        await client.currently_playing(token)
    assert held.value.reason == "budget"
    assert sim.limits.counts["quota_429"] == 1  # the second call never reached Spotify
    assert (await budget.usage()).per_day == 4


# -- shared through Redis ------------------------------------------------------------------------


@pytest.fixture
async def two_budgets(
    flushed: str, clock: FakeClock
) -> AsyncIterator[tuple[CallBudget, CallBudget]]:
    coords = [RedisCoordinator(flushed, clock=clock) for _ in range(2)]
    for c in coords:
        await c.start(lambda _a, _p: None)
    try:
        yield (
            CallBudget(clock, per_window=8, per_day=10**7, ledger=coords[0].ledger(), margin=0),
            CallBudget(clock, per_window=8, per_day=10**7, ledger=coords[1].ledger(), margin=0),
        )
    finally:
        for c in coords:
            await c.close()


async def test_instances_share_one_window_through_redis(
    clock: FakeClock, two_budgets: tuple[CallBudget, CallBudget]
) -> None:
    """Two instances asking for a call every half second for 2 min: 8 per 30 s between them."""
    a, b = two_budgets
    granted: list[float] = []
    start = clock.now()
    for tick in range(240):
        now = start + tick * 0.5
        for budget in (a, b):
            if await budget.ledger.try_spend(now, 30, 8, 1000) == 0:
                granted.append(now)
    assert max_in_window(granted, 30) == 8
    assert len(granted) == 32  # and every window was used to the full: 4 windows of 8
    assert (await a.ledger.used(start + 119.5, 30))[1] == 32


async def test_what_one_instance_learns_the_other_obeys(
    clock: FakeClock, two_budgets: tuple[CallBudget, CallBudget]
) -> None:
    """A 429 met by one instance cuts the window for both; the quota blocks both."""
    a, b = two_budgets
    started = await a.spend()
    await spend_all(b, 7)
    await a.refused(started, 3, quota=False)
    assert await b.per_window() == 5
    await a.interval("x")
    await clock.advance(31)  # the 8 calls leave the window, the limit grows back by one
    # b sees both polled accounts and a's cut: 2 accounts share 6 calls less 1 held, less 1
    assert (await b.interval("y")).every == pytest.approx(30 * 2 / 4)
    await b.refused(clock.now(), 3600, quota=True)
    with pytest.raises(OverBudget):
        await a.spend()


async def test_a_pull_sources_rate_holds_across_instances_in_its_own_ledger(
    flushed: str, clock: FakeClock
) -> None:
    """Last.fm's 4 calls a second, spent by two instances asking every 50 ms for 10 s: never
    more than 4 in any second between them, the rate used to the full, a hold one instance
    learns (a 429) obeyed by the other, and Spotify's ledger untouched."""
    coords = [RedisCoordinator(flushed, clock=clock) for _ in range(2)]
    try:
        a, b = (rate_budget(clock, 4.0, c.ledger("lastfm")) for c in coords)
        granted: list[float] = []
        for _ in range(200):
            for budget in (a, b):
                with contextlib.suppress(OverBudget):
                    granted.append(await budget.spend())
            await clock.advance(0.05)
        assert max_in_window(granted, 1.0) == 4
        assert len(granted) >= 36  # 4 per 1.05 s (the margin) for 10 s
        assert await coords[0].ledger().used(clock.now(), 30) == (0, 0)  # Spotify's
        await a.hold(60)
        with pytest.raises(OverBudget):
            await b.take()
        await clock.advance(60)
        assert await b.take() is not None
    finally:
        for c in coords:
            await c.close()


def test_rate_budgets_of_any_rate() -> None:
    """A rate below one a second counts one call over a longer window; above, whole calls."""
    clock = FakeClock()
    slow, fast = rate_budget(clock, 0.5, LocalLedger()), rate_budget(clock, 4.0, LocalLedger())
    assert (slow.window, slow.configured_per_window) == (2.0, 1)
    assert (fast.window, fast.configured_per_window) == (1.0, 4)
    assert fast.regular_limit(4) == 4  # no reserve: no poll of a pull source is a known moment


# -- in the app: every upstream call spends, and the owner sees it -------------------------------


async def test_app_spends_every_upstream_call_and_healthz_shows_it(connected: Env) -> None:
    """Login (token + /me) and a poll each spent from the app's budget: /healthz counts them."""
    assert (await connected.client.get("/api/spotify")).status_code == 200
    health = (await connected.client.get("/healthz")).json()
    accepted = connected.sim.limits.counts["accepted"]
    assert accepted >= 3  # code exchange, /me, currently-playing
    assert health["budget"]["usedWindow"] == accepted
    assert health["budget"]["perWindow"] == health["budget"]["configuredPerWindow"] == 60
    assert health["budget"]["usedDay"] == accepted
    assert health["pause"] is None


async def test_owner_page_and_account_show_the_budget(connected: Env) -> None:
    """The owner page says how many calls are in use; /api/account carries the numbers."""
    await connected.client.get("/api/spotify")
    page = await connected.client.get("/")
    assert "data-np-budget" in page.text
    assert "Spotify calls:" in page.text
    account = (await connected.client.get("/api/account")).json()
    assert account["budget"]["configuredPerDay"] == 100_000


async def test_unreachable_redis_counts_locally(clock: FakeClock) -> None:
    """Redis down: the instance still keeps to the budget on its own (a local ledger), and
    learns from 429s; nothing raises."""
    coord = RedisCoordinator(f"redis://127.0.0.1:{free_port()}/0", retry_every=60, clock=clock)
    await coord.start(lambda _a, _p: None)
    try:
        budget = CallBudget(clock, per_window=4, per_day=10**7, ledger=coord.ledger(), margin=0)
        granted = [
            await budget.ledger.try_spend(clock.now() + t, 30, 4, 10**7) == 0 for t in range(8)
        ]
        assert granted == [True] * 4 + [False] * 4
        await budget.refused(clock.now(), 5, quota=False)
        assert await budget.per_window() == 2  # 0.7 x 4, learned locally
        assert coord.degraded
    finally:
        await coord.close()
