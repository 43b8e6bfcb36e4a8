"""The pull sources in the live engine, on a fake clock against the simulated Last.fm and
ListenBrainz: read only while watched, within their own budgets, merged with Spotify."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from harness.app import Env, make_settings
from harness.engine import FakeSpotify, subscribers
from harness.helpers import reads_of

from nowplaying.clock import FakeClock
from nowplaying.coord.base import LocalCoordinator
from nowplaying.engine.accounts import new_public_id
from nowplaying.engine.live import LiveHub, Snapshot
from nowplaying.engine.problems import AccountProblems
from nowplaying.engine.schedule import Schedule
from nowplaying.models import AccountStatus, NowPlaying, SourceKind
from nowplaying.runtime import Upstreams, pull_clients, pull_sources, simulated_upstreams
from nowplaying.simulator import Simulator
from nowplaying.simulator.lastfm import Scrobble
from nowplaying.sources.base import ReconnectRequired
from nowplaying.sources.spotify.errors import InvalidGrant
from nowplaying.store import Account, SourceLink

pytestmark = pytest.mark.anyio

SONG = Scrobble("Artist", "Song", duration=300)


@dataclass
class Links:
    """Each widget's linked sources, as the store lists them."""

    links: dict[str, list[SourceLink]] = field(default_factory=dict)
    lists: int = 0

    def link(self, account_id: str, kind: SourceKind, user: str) -> None:
        self.links.setdefault(account_id, []).append(SourceLink(account_id, kind, user, "", 0.0))

    async def list_sources(self, account_id: str) -> list[SourceLink]:
        self.lists += 1
        return list(self.links.get(account_id, []))


@dataclass
class World:
    sim: Simulator
    hub: LiveHub
    links: Links
    spotify: FakeSpotify
    problems: AccountProblems
    clock: FakeClock

    def lastfm_calls(self) -> int:
        return self.sim.lastfm.calls["user.getrecenttracks"]

    def listenbrainz_calls(self) -> int:
        return self.sim.listenbrainz.calls["playing-now"]

    def widget(self, account_id: str, *kinds: SourceKind) -> None:
        """A widget with these sources; each pull source's user is named after the widget."""
        for kind in kinds:
            self.links.link(account_id, kind, account_id)
            if kind is SourceKind.LASTFM and account_id not in self.sim.lastfm.users:
                self.sim.lastfm.add_user(account_id)
            if kind is SourceKind.LISTENBRAINZ and account_id not in self.sim.listenbrainz.users:
                self.sim.listenbrainz.add_user(account_id)

    async def shown(self, account_id: str) -> Snapshot:
        snap = await self.hub.current(account_id)
        assert snap is not None
        return snap


@pytest.fixture
async def world(clock: FakeClock, tmp_path: Path) -> AsyncIterator[World]:
    settings = make_settings(tmp_path)
    sim = Simulator(clock=clock)
    transport = httpx.ASGITransport(app=simulated_upstreams(sim, spotify_prefix=""))
    async with httpx.AsyncClient(transport=transport) as http:
        links, problems = Links(), AccountProblems(clock)
        pulls = pull_sources(
            settings,
            clock,
            links=links,
            coord=LocalCoordinator(),
            problems=problems,
            clients=pull_clients(settings, http, clock, Upstreams.of(settings, "", False)),
        )
        spotify = FakeSpotify(clock)

        async def fetch(account_id: str) -> NowPlaying:
            """Spotify, through a token manager that refuses a widget without it uncalled."""
            linked = await links.list_sources(account_id)
            if not any(link.kind is SourceKind.SPOTIFY for link in linked):
                raise ReconnectRequired("no Spotify source")
            return await spotify.fetch(account_id)

        hub = LiveHub(
            reads_of(fetch),
            clock,
            schedule=Schedule(poll_seconds=5.0, rng=random.Random(1)),
            pulls=pulls,
        )
        try:
            yield World(sim, hub, links, spotify, problems, clock)
        finally:
            await hub.close()


def title(snap: Snapshot) -> str | None:
    playing = snap.playing
    return playing.item.title if playing is not None and playing.item is not None else None


async def test_a_widget_without_spotify_shows_lastfm_and_never_calls_spotify(
    world: World, clock: FakeClock
) -> None:
    """Last.fm's now playing reaches a viewer within one read interval (2 s for one watched
    account), named as Last.fm's, and Spotify is never called for a widget without it."""
    world.widget("w", SourceKind.LASTFM)
    async with subscribers(world.hub, "w", 1) as (viewer,):
        first = await viewer.get()
        assert first.playing is not None and not first.playing.active
        await clock.advance(0.5)
        world.sim.lastfm.play("w", SONG)
        played = clock.now()
        for _ in range(25):  # 2.5 s in 0.1 s steps: seen by the next read, 2 s after the first
            await clock.advance(0.1)
            if not viewer.empty():
                break
        seen = viewer.get_nowait()
        assert title(seen) == "Song" and seen.playing is not None
        assert seen.playing.source is SourceKind.LASTFM and seen.playing.progress_ms is None
        assert clock.now() - played <= 2.0
    assert world.spotify.calls == 0
    assert world.hub.counts["polls"] == 1  # the watch's first: refused without a call, then none


async def test_no_call_while_nobody_watches(world: World, clock: FakeClock) -> None:
    """Widgets with Last.fm and ListenBrainz cost nothing until watched, and stop costing once
    nobody has watched for the watch TTL."""
    world.widget("w", SourceKind.LASTFM, SourceKind.LISTENBRAINZ)
    await clock.advance(120, step=1)
    assert (world.lastfm_calls(), world.listenbrainz_calls()) == (0, 0)
    async with subscribers(world.hub, "w", 1):
        await clock.advance(20, step=0.5)
    watched = world.lastfm_calls(), world.listenbrainz_calls()
    assert watched[0] >= 9 and watched[1] >= 9  # read every 2 s (Last.fm), 1-2 s (ListenBrainz)
    await clock.advance(world.hub.watch_ttl + 5, step=1)
    settled = world.lastfm_calls(), world.listenbrainz_calls()
    await clock.advance(300, step=1)
    assert (world.lastfm_calls(), world.listenbrainz_calls()) == settled


@contextlib.asynccontextmanager
async def watching(hub: LiveHub, accounts: list[str]) -> AsyncIterator[None]:
    """One viewer on each of ``accounts`` while the context is open."""
    async with contextlib.AsyncExitStack() as stack:
        for account in accounts:
            await stack.enter_async_context(hub.subscribe(account))
        yield


async def test_lastfm_budget_one_call_per_2s_per_account_and_4_per_s_for_the_app(
    world: World, clock: FakeClock
) -> None:
    """One watched account: one call per 2 s (30 a minute); 50 watched accounts: never more
    than 4 calls in any second (the simulated Last.fm answers a fifth with error 29), and all
    of that rate used (about 240 a minute, shared)."""
    world.sim.lastfm.calls_per_second = 4
    world.widget("solo", SourceKind.LASTFM)
    async with watching(world.hub, ["solo"]):
        await clock.advance(60, step=0.1)
    assert 29 <= world.lastfm_calls() <= 31
    many = [f"w{n}" for n in range(50)]
    for account in many:
        world.widget(account, SourceKind.LASTFM)
    await clock.advance(world.hub.watch_ttl + 5, step=1)  # "solo" is no longer watched
    before = world.lastfm_calls()
    async with watching(world.hub, many):
        await clock.advance(60, step=0.05)
    made = world.lastfm_calls() - before
    assert world.sim.lastfm.calls["rate_limited"] == 0
    assert 150 <= made <= 4 * 61
    shown = [await world.shown(account) for account in many]
    assert all(snap.playing is not None for snap in shown)


async def test_listenbrainz_one_call_per_second_and_within_its_headers(
    world: World, clock: FakeClock
) -> None:
    """ListenBrainz: at most one call a second for the app by default; and where its
    rate-limit headers allow fewer (5 per 10 s here), never a 429."""
    accounts = ["a", "b", "c"]
    for account in accounts:
        world.widget(account, SourceKind.LISTENBRAINZ)
    async with watching(world.hub, accounts):
        await clock.advance(60, step=0.05)
    assert 40 <= world.listenbrainz_calls() <= 61
    assert world.sim.listenbrainz.calls["rate_limited"] == 0
    # Nobody watches (the pollers stop) and the limit falls; the window counted at the old
    # limit may end in one 429 (nothing told of the change), then never again.
    world.sim.listenbrainz.limit = 5
    await clock.advance(world.hub.watch_ttl + world.sim.listenbrainz.window, step=1)
    refused, before = world.sim.listenbrainz.calls["rate_limited"], world.listenbrainz_calls()
    async with watching(world.hub, accounts):
        await clock.advance(60, step=0.05)
    made = world.listenbrainz_calls() - before
    assert world.sim.listenbrainz.calls["rate_limited"] == refused
    assert 25 <= made <= 5 * 7  # 5 per 10 s window: the allowance used, not exceeded


async def test_a_private_lastfm_profile_is_a_notice_and_the_owner_sees_the_fix(
    world: World, clock: FakeClock
) -> None:
    """Error 17 shows as the widget's notice ("private on Last.fm") and a refusal with its fix
    for the owner; once the profile is public again, both go."""
    world.widget("w", SourceKind.LASTFM)
    world.sim.lastfm.users["w"].private = True
    snap = await world.shown("w")
    assert snap.notice is not None and snap.notice.kind == "private"
    view = snap.view(clock.now()).data()
    assert view["notice"] == {
        "source": "lastfm",
        "kind": "private",
        "message": "Listening is private on Last.fm",
    }
    refusal = world.problems.get("w", SourceKind.LASTFM)
    assert refusal is not None and "privacy settings" in refusal.fix
    assert world.problems.get("w") is None  # not Spotify's
    world.sim.lastfm.users["w"].private = False
    world.sim.lastfm.play("w", SONG)
    assert world.hub.pulls is not None
    async with watching(world.hub, ["w"]):
        await clock.advance(world.hub.pulls.refused_wait + 1, step=0.5)
    snap = await world.shown("w")
    assert snap.notice is None and title(snap) == "Song"
    assert world.problems.get("w", SourceKind.LASTFM) is None


async def test_a_lastfm_rate_limit_holds_lastfm_only(world: World, clock: FakeClock) -> None:
    """Error 29 holds every widget's Last.fm reads for a minute; Spotify's polls go on, and
    there is no app-wide pause."""
    world.widget("w", SourceKind.SPOTIFY, SourceKind.LASTFM)
    world.widget("x", SourceKind.LASTFM)
    world.sim.lastfm.calls_per_second = 0
    async with watching(world.hub, ["w", "x"]):
        await clock.advance(1, step=0.1)
        assert world.sim.lastfm.calls["rate_limited"] == 1
        spotify_before = world.spotify.calls
        await clock.advance(50, step=0.5)
        assert world.sim.lastfm.calls["rate_limited"] == 1  # held: not asked again
        assert world.spotify.calls > spotify_before
        assert world.hub.pause is None
        world.sim.lastfm.calls_per_second = None
        await clock.advance(15, step=0.5)
    assert world.lastfm_calls() >= 3


async def test_spotify_and_lastfm_merge_into_one_state(world: World, clock: FakeClock) -> None:
    """Spotify stopped while Last.fm plays: Last.fm's track shows; the same track on both:
    Spotify's, with its progress."""
    world.widget("w", SourceKind.SPOTIFY, SourceKind.LASTFM)
    world.spotify.stopped = True
    world.sim.lastfm.play("w", SONG)
    async with watching(world.hub, ["w"]):
        await clock.advance(3, step=0.1)
        snap = await world.shown("w")
        assert title(snap) == "Song" and snap.playing is not None
        assert snap.playing.source is SourceKind.LASTFM
        world.sim.lastfm.play("w", Scrobble("Artist", "two", duration=30))  # FakeSpotify's 2nd
        world.spotify.stopped = False
        world.spotify.skip()
        await clock.advance(6, step=0.1)
        snap = await world.shown("w")
    assert title(snap) == "two" and snap.playing is not None
    assert snap.playing.source is SourceKind.SPOTIFY and snap.playing.progress_ms is not None


async def test_a_lost_spotify_grant_leaves_the_other_sources_showing(
    world: World, clock: FakeClock
) -> None:
    """Spotify's grant gone on a widget that also has Last.fm: Last.fm's state still shows
    (no "reconnect required" over the whole widget)."""
    world.widget("w", SourceKind.SPOTIFY, SourceKind.LASTFM)
    world.spotify.errors = [InvalidGrant("revoked")] * 3
    world.sim.lastfm.play("w", SONG)
    async with watching(world.hub, ["w"]):
        await clock.advance(3, step=0.1)
        snap = await world.shown("w")
    assert not snap.grant_gone and title(snap) == "Song"


async def test_a_source_linked_later_is_read_after_a_restart(
    world: World, clock: FakeClock
) -> None:
    """A widget with nothing to read (pushes only) shows nothing playing at once; a Last.fm
    linked meanwhile is read once the widget restarts (as linking does)."""
    world.links.links["w"] = []
    snap = await world.shown("w")
    assert snap.playing is not None and not snap.playing.active
    world.widget("w", SourceKind.LASTFM)
    world.sim.lastfm.play("w", SONG)
    await world.hub.restart("w")
    await clock.advance(0.5, step=0.1)
    assert title(await world.shown("w")) == "Song"
    assert world.spotify.calls == 0


async def test_an_unlinked_or_reconnect_source_is_not_read(world: World, clock: FakeClock) -> None:
    """A Last.fm link that needs connecting again is not read."""
    world.links.links["w"] = [
        SourceLink("w", SourceKind.LASTFM, "w", "", 0.0, status=AccountStatus.RECONNECT_REQUIRED)
    ]
    world.sim.lastfm.add_user("w")
    async with watching(world.hub, ["w"]):
        await clock.advance(10, step=0.5)
    assert world.lastfm_calls() == 0


async def test_in_the_app_a_widget_without_spotify_reads_lastfm_and_never_spotify(
    env: Env,
) -> None:
    """The whole app: a widget made with Last.fm, published, shows what its Last.fm user plays
    (via Last.fm, no progress), and the simulated Spotify sees no call of any kind."""
    store, now = env.services.runtime.store, env.clock.now()
    widget = Account("lastfm:rj", "rj", "", frozenset(), now, spotify=False)
    await store.add_widget(widget, SourceLink(widget.id, SourceKind.LASTFM, "rj", "key", now))
    public_id = new_public_id()
    await store.set_public_id(widget.id, public_id)
    env.sim.lastfm.add_user("rj")
    env.sim.lastfm.play("rj", SONG)
    shown = (await env.client.get(f"/p/{public_id}.json")).json()
    assert (shown["title"], shown["source"], "progressMs" in shown) == ("Song", "lastfm", False)
    await env.clock.advance(30, step=0.5)
    env.sim.lastfm.scrobble("rj", SONG)
    await env.clock.advance(3, step=0.5)
    assert (await env.client.get(f"/p/{public_id}.json")).json()["isPlaying"] is False
    assert 15 <= env.sim.lastfm.calls["user.getrecenttracks"] <= 18  # one per 2 s
    assert sum(env.sim.calls.values()) == 0  # no token refresh, no Web API call
