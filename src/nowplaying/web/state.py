"""The services every handler reaches through ``request.app.state``."""

from __future__ import annotations

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
from nowplaying.web.published import PublishedAccounts
from nowplaying.web.sessions import Sessions
from nowplaying.web.sse import Streams


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
    webhooks: Webhooks | None = None
    """The owners' track-change webhooks (:mod:`nowplaying.ops.webhooks`), once started."""

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
