"""The services every handler reaches through ``request.app.state``."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field

from starlette.requests import Request

from nowplaying.cards.cache import CardCache
from nowplaying.cards.covers import CoverFetcher
from nowplaying.engine.recent import RecentlyPlayed
from nowplaying.ops.metrics import Metrics
from nowplaying.ops.webhooks import Webhooks
from nowplaying.runtime import Runtime
from nowplaying.simulator import Simulator
from nowplaying.sources import coverart
from nowplaying.web.grip import Grip
from nowplaying.web.published import PublishedAccounts
from nowplaying.web.sessions import Sessions
from nowplaying.web.sse import Streams

LARGE_READS = 2
"""Imports read at once: up to 10 MB each, and about five times that parsed."""


@dataclass
class Services:
    """Everything a handler needs, built once per app in the lifespan: the :class:`Runtime`
    every entry point shares, and the parts only the web has."""

    runtime: Runtime
    sessions: Sessions
    public_origin: str
    simulator: Simulator | None
    covers: CoverFetcher
    published: PublishedAccounts
    metrics: Metrics
    streams: Streams
    coverart_url: str = coverart.ARCHIVE_URL
    """The Cover Art Archive pushed listens' covers come from (the simulator's in demo mode)."""
    cards: CardCache = field(default_factory=CardCache)
    """Rendered SVG cards (see :mod:`nowplaying.cards.cache`)."""
    large_reads: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(LARGE_READS))
    """Large push bodies (ListenBrainz imports) read and parsed at once, at most."""
    webhooks: Webhooks | None = None
    """The owners' track-change webhooks (:mod:`nowplaying.ops.webhooks`), once started."""
    grip: Grip | None = None
    """Pushpin holds the public event streams (:mod:`nowplaying.web.grip`), when configured."""

    @property
    def demo(self) -> bool:
        return self.simulator is not None

    @functools.cached_property
    def recent(self) -> RecentlyPlayed:
        """Recently played per account, read from the source at most once per TTL."""
        rt = self.runtime
        return RecentlyPlayed(rt.hub.reads.recently_played, rt.clock)


def services(request: Request) -> Services:
    """The app's services, from a request."""
    svc: Services = request.app.state.services
    return svc
