"""The services every handler reaches through ``request.app.state``."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from starlette.requests import Request

from nowplaying.cards.cache import CardCache
from nowplaying.cards.covers import CoverFetcher
from nowplaying.clock import Clock
from nowplaying.config import Settings
from nowplaying.coord.base import Coordinator
from nowplaying.engine.live import LiveHub
from nowplaying.engine.problems import AccountProblems
from nowplaying.engine.recent import RecentlyPlayed, read_recent
from nowplaying.ops.alerts import Alerter
from nowplaying.ops.metrics import Metrics
from nowplaying.simulator import Simulator
from nowplaying.sources.spotify.client import SpotifyClient
from nowplaying.sources.spotify.grants import TokenManager
from nowplaying.store import Store
from nowplaying.web.published import PublishedAccounts
from nowplaying.web.sessions import Sessions


@dataclass
class Services:
    """Everything a handler needs, built once per app in the lifespan."""

    settings: Settings
    clock: Clock
    store: Store
    client: SpotifyClient
    tokens: TokenManager
    hub: LiveHub
    sessions: Sessions
    public_origin: str
    simulator: Simulator | None
    covers: CoverFetcher
    coord: Coordinator
    published: PublishedAccounts
    metrics: Metrics
    problems: AccountProblems | None = None
    """Spotify's refusals of accounts (development-mode 403s), for the owner page."""
    cards: CardCache = field(default_factory=CardCache)
    """Rendered SVG cards (see :mod:`nowplaying.cards.cache`)."""
    alerts: Alerter | None = None
    """The owner alerts (``NOWPLAYING_ALERT_WEBHOOK``), when configured."""

    @property
    def demo(self) -> bool:
        return self.simulator is not None

    @functools.cached_property
    def recent(self) -> RecentlyPlayed:
        """Recently played per account, read from Spotify at most once per TTL."""
        return RecentlyPlayed(functools.partial(read_recent, self.tokens, self.client), self.clock)


def services(request: Request) -> Services:
    """The app's services, from a request."""
    svc: Services = request.app.state.services
    return svc
