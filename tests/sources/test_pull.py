"""Last.fm and ListenBrainz as Sources: the linked user read, the budget spent first, the
upstream's limits held for every widget."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from nowplaying.clock import FakeClock
from nowplaying.coord.ledger import LocalLedger
from nowplaying.models import AccountStatus, SourceKind
from nowplaying.runtime import simulated_upstreams
from nowplaying.simulator import Simulator
from nowplaying.simulator.lastfm import Scrobble
from nowplaying.sources.base import RateLimited, ReconnectRequired, Unavailable
from nowplaying.sources.budget import OverBudget, rate_budget
from nowplaying.sources.lastfm import LastFmClient
from nowplaying.sources.listenbrainz import ListenBrainzClient
from nowplaying.sources.pull import LastFmSource, ListenBrainzSource
from nowplaying.store import SourceLink

pytestmark = pytest.mark.anyio


class Links:
    def __init__(self, *links: SourceLink) -> None:
        self.links = list(links)

    async def list_sources(self, account_id: str) -> list[SourceLink]:
        return [link for link in self.links if link.account_id == account_id]


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    simulator = Simulator(clock=clock)
    transport = httpx.ASGITransport(app=simulated_upstreams(simulator, spotify_prefix=""))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as http:
        yield simulator, http


def lastfm_source(
    http: httpx.AsyncClient, clock: FakeClock, *links: SourceLink, rate: float = 4.0
) -> LastFmSource:
    client = LastFmClient(
        http,
        clock,
        api_key="lfkey",
        api_secret="lfsecret",
        api_url="http://sim.test/lastfm-sim/2.0/",
    )
    return LastFmSource(client, Links(*links), rate_budget(clock, rate, LocalLedger()))


async def test_lastfm_reads_the_linked_user_and_keeps_the_last_scrobble(
    sim: tuple[Simulator, httpx.AsyncClient], clock: FakeClock
) -> None:
    simulator, http = sim
    simulator.lastfm.add_user("rj")
    simulator.lastfm.scrobble("rj", Scrobble("A", "Before"), at=clock.now() - 60)
    simulator.lastfm.play("rj", Scrobble("A", "Now"))
    source = lastfm_source(http, clock, SourceLink("w", SourceKind.LASTFM, "rj", "", 0.0))
    playing = await source.now_playing("w")
    assert playing.item is not None and playing.item.title == "Now"
    (last,) = await source.recently_played("w", 1)
    assert last.item.title == "Before"


async def test_no_call_for_a_widget_without_the_source_or_past_the_budget(
    sim: tuple[Simulator, httpx.AsyncClient], clock: FakeClock
) -> None:
    """Unlinked (or to be connected again): ReconnectRequired; the budget spent: Unavailable;
    neither reaches Last.fm."""
    simulator, http = sim
    stale = SourceLink(
        "old", SourceKind.LASTFM, "demo", "", 0.0, status=AccountStatus.RECONNECT_REQUIRED
    )
    source = lastfm_source(
        http, clock, stale, SourceLink("w", SourceKind.LASTFM, "demo", "", 0.0), rate=1.0
    )
    for widget in ("nobody", "old"):
        with pytest.raises(ReconnectRequired):
            await source.now_playing(widget)
    await source.now_playing("w")
    with pytest.raises(Unavailable):
        await source.now_playing("w")  # a second call in the same second
    assert simulator.lastfm.calls["user.getrecenttracks"] == 1


async def test_listenbrainz_holds_its_budget_as_the_headers_say(
    sim: tuple[Simulator, httpx.AsyncClient], clock: FakeClock
) -> None:
    """X-RateLimit-Remaining 0 holds the budget until X-RateLimit-Reset-In; a 429 as well."""
    simulator, http = sim
    simulator.listenbrainz.limit = 1
    client = ListenBrainzClient(http, clock, api_url="http://sim.test/listenbrainz-sim")
    budget = rate_budget(clock, 10.0, LocalLedger())
    source = ListenBrainzSource(
        client, Links(SourceLink("w", SourceKind.LISTENBRAINZ, "demo", "", 0.0)), budget
    )
    await source.now_playing("w")
    with pytest.raises(OverBudget):
        await budget.take()
    await clock.advance(simulator.listenbrainz.window)
    assert await budget.take() is not None
    await clock.advance(1)
    simulator.listenbrainz.limit = 0
    with pytest.raises(RateLimited):
        await source.now_playing("w")
    with pytest.raises(OverBudget):
        await budget.take()
