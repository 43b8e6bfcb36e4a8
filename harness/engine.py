"""Fakes around the live engine on a fake clock: a scripted upstream, a crowd of subscribers,
the owner's notices and the accounts the reads look up."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from harness.helpers import reads_of
from nowplaying.clock import FakeClock
from nowplaying.coord.base import LocalCoordinator
from nowplaying.engine.fanout import Subscription
from nowplaying.engine.live import LiveHub
from nowplaying.engine.pause import AppPause
from nowplaying.engine.schedule import Schedule
from nowplaying.models import Item, Kind, NowPlaying
from nowplaying.store import Account, Pause, StoreError


def track(title: str, duration_s: float = 200.0) -> Item:
    """A track ``title`` of ``duration_s`` seconds."""
    return Item(
        kind=Kind.TRACK,
        title=title,
        artists=("Artist",),
        album="Album",
        image_url=None,
        url=None,
        duration_ms=int(duration_s * 1000),
        uri=f"spotify:track:{title}",
    )


class FakeSpotify:
    """A scripted account: plays a queue of tracks on the clock; errors can be queued."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls = 0
        self.errors: list[Exception] = []
        self.playing = True
        self.tracks = [track("one", 20), track("two", 30), track("three", 40)]
        self.index = 0
        self.started = clock.now()
        self.stopped = False

    def skip(self) -> None:
        self.index = (self.index + 1) % len(self.tracks)
        self.started = self.clock.now()

    async def fetch(self, account_id: str) -> NowPlaying:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        now = self.clock.now()
        if self.stopped:
            return NowPlaying(is_playing=False, timestamp=now)
        # advance through the playlist by the clock
        while now - self.started >= self.tracks[self.index].duration_ms / 1000:
            self.started += self.tracks[self.index].duration_ms / 1000
            self.index = (self.index + 1) % len(self.tracks)
        it = self.tracks[self.index]
        progress = int((now - self.started) * 1000)
        return NowPlaying(self.playing, Kind.TRACK, it, progress, now)


@contextlib.asynccontextmanager
async def subscribers(hub: LiveHub, account_id: str, n: int) -> AsyncIterator[list[Subscription]]:
    """Open ``n`` subscriptions to one account at once."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(hub.subscribe(account_id)) for _ in range(n)]


@dataclass
class FakeNotices:
    """What the engine tells the owner (a lost grant, a pause, a withdrawn read), recorded."""

    reconnects: list[str] = field(default_factory=list)
    pauses: list[tuple[float, str | None]] = field(default_factory=list)
    withdrawn_reads: list[str] = field(default_factory=list)

    def reconnect_needed(self, account_id: str) -> None:
        self.reconnects.append(account_id)

    def paused(self, retry_after: float, reason: str | None) -> None:
        self.pauses.append((retry_after, reason))

    def withdrawn(self, what: str, disabled: str, fix: str) -> None:
        self.withdrawn_reads.append(what)


@dataclass
class FakeAccounts:
    """The accounts the engine looks up, from a dict."""

    accounts: dict[str, Account] = field(default_factory=dict)

    async def get_account_info(self, account_id: str) -> Account | None:
        return self.accounts.get(account_id)


@dataclass
class OneTrack:
    """An upstream playing one ten-minute track (``title``, which a test may change) from its
    start, counting its reads."""

    clock: FakeClock
    title: str = "t"
    calls: int = 0

    async def fetch(self, account_id: str) -> NowPlaying:
        self.calls += 1
        it = Item(Kind.TRACK, self.title, ("a",), None, None, None, 600_000, uri=self.title)
        return NowPlaying(True, Kind.TRACK, it, 0, self.clock.now())


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
