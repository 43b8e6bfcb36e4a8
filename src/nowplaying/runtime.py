"""Wiring only: the long-lived parts built from settings, for the app's lifespan and the CLI alike.

In demo mode the built-in simulator plays Spotify: the browser reaches it under ``/spotify-sim``
on the app's own origin, and the server's calls go to it in-process.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from nowplaying.clock import Clock, SystemClock
from nowplaying.config import Settings
from nowplaying.coord.base import Coordinator, LocalCoordinator
from nowplaying.coord.link import RedisLink
from nowplaying.coord.redis import RedisCoordinator
from nowplaying.crypto import TokenCipher
from nowplaying.engine.accounts import account_ready
from nowplaying.engine.live import LiveHub
from nowplaying.engine.pause import AppPause
from nowplaying.engine.problems import AccountProblems
from nowplaying.engine.reads import Reads
from nowplaying.engine.schedule import Schedule
from nowplaying.ops.alerts import Alerter, LocalClaims, RedisClaims
from nowplaying.simulator import Simulator
from nowplaying.sources.base import Source
from nowplaying.sources.budget import CallBudget
from nowplaying.sources.spotify.client import SpotifyClient
from nowplaying.sources.spotify.grants import TokenManager
from nowplaying.sources.spotify.source import SpotifySource
from nowplaying.store import Store, StoreError, open_store

SIM_PREFIX = "/spotify-sim"
log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The parts every entry point shares."""

    settings: Settings
    clock: Clock
    store: Store
    http: httpx.AsyncClient
    client: SpotifyClient
    tokens: TokenManager
    hub: LiveHub
    coord: Coordinator = field(default_factory=LocalCoordinator)
    """Shared with the hub and the tokens (the web layer's public-id cache listens on it)."""
    problems: AccountProblems | None = None
    """Spotify's refusals of accounts (dev-mode 403s), noted by the poll path."""
    alerts: Alerter | None = None
    """Owner alerts, when ``NOWPLAYING_ALERT_WEBHOOK`` is set."""
    budget: CallBudget | None = None
    """The app's call budget every upstream call spends from (``client.budget``)."""

    @property
    def source(self) -> Source:
        """Where the live engine reads what accounts play (Spotify)."""
        return self.hub.reads.source


async def report_unreadable(store: Store) -> int:
    """Log how many accounts the configured keys cannot open, and which setting fixes it."""
    try:
        accounts = await store.list_accounts()
    except StoreError as e:
        log.warning("could not list accounts at start (%s)", type(e).__name__)
        return 0
    locked = sum(1 for a in accounts if a.key_missing)
    if locked:
        log.error(
            "%d of %d account(s) were sealed with a secret key that is not configured: they read"
            " as 'reconnect needed'. Add the previous key to NOWPLAYING_OLD_SECRET_KEYS (a JSON"
            " list) and restart, or ask their owners to reconnect. Nothing was deleted.",
            locked,
            len(accounts),
        )
    return locked


def demo_simulator(settings: Settings, clock: Clock, public_origin: str) -> Simulator:
    """The simulator demo mode serves, registered for the configured redirect URI."""
    return Simulator(
        clock=clock,
        client_id=settings.client_id,
        client_secret=settings.client_secret.get_secret_value(),
        redirect_uris=(settings.spotify_redirect_uri,),
        public_url=f"{public_origin}{SIM_PREFIX}",
    )


def make_cipher(settings: Settings) -> TokenCipher:
    return TokenCipher(
        settings.secret_key.get_secret_value(),
        [k.get_secret_value() for k in settings.nowplaying_old_secret_keys],
    )


async def _start_alerts(
    settings: Settings,
    *,
    store: Store,
    clock: Clock,
    public_origin: str,
    stack: contextlib.AsyncExitStack,
    link: RedisLink | None,
) -> Alerter | None:
    """The owner alerts' background task, when a webhook is configured."""
    webhook = settings.nowplaying_alert_webhook.get_secret_value()
    if not webhook:
        return None
    db = settings.sqlite_path
    sent_file = db.with_name(db.name + ".alerts.json") if db and str(db) != ":memory:" else None
    alerter = Alerter(
        webhook,
        store=store,
        clock=clock,
        claims=RedisClaims(link, clock) if link is not None else LocalClaims(clock, sent_file),
        owner_url=f"{public_origin}/",
    )
    await alerter.start()
    stack.push_async_callback(alerter.close)
    return alerter


def _upstream_urls(settings: Settings, public_origin: str, demo: bool) -> tuple[str, str]:
    """The Accounts service and Web API the client calls: the simulator's, in demo mode."""
    if demo and settings.demo:
        accounts_url = f"{public_origin}{SIM_PREFIX}"
        return accounts_url, f"{accounts_url}/v1"
    return settings.spotify_accounts_url, settings.spotify_api_url


async def _open_http(
    stack: contextlib.AsyncExitStack, simulator: Simulator | None
) -> httpx.AsyncClient:
    """The one HTTP client for upstream calls (to the simulator in-process, when given one)."""
    transport = None
    if simulator is not None:
        transport = httpx.ASGITransport(app=Starlette(routes=[Mount(SIM_PREFIX, simulator.app)]))
    return await stack.enter_async_context(
        httpx.AsyncClient(transport=transport, follow_redirects=False)
    )


def _open_link(
    settings: Settings, clock: Clock, stack: contextlib.AsyncExitStack
) -> RedisLink | None:
    """The process's one Redis client, when ``NOWPLAYING_REDIS_URL`` is set (closed last)."""
    if not settings.nowplaying_redis_url:
        return None
    link = RedisLink(settings.nowplaying_redis_url, clock=clock)
    stack.push_async_callback(link.close)
    return link


def _schedule(settings: Settings) -> Schedule:
    return Schedule(
        poll_seconds=settings.nowplaying_poll_seconds,
        floor=settings.nowplaying_poll_floor_seconds,
        ceiling=settings.nowplaying_poll_ceiling_seconds,
    )


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    public_origin: str,
    http: httpx.AsyncClient | None = None,
    store: Store | None = None,
    clock: Clock | None = None,
    simulator: Simulator | None = None,
    alerts: bool = False,
) -> AsyncIterator[Runtime]:
    """Open everything; close what was opened here (injected parts stay the caller's).
    ``alerts``: run the owner alerts (the server does; a CLI command does not)."""
    clock = clock or SystemClock()
    async with contextlib.AsyncExitStack() as stack:
        if store is None:
            store = open_store(settings.nowplaying_database_url, cipher=make_cipher(settings))
            await store.open()
            stack.push_async_callback(store.close)
            await report_unreadable(store)
        http = http or await _open_http(stack, simulator)
        accounts_url, api_url = _upstream_urls(settings, public_origin, simulator is not None)
        link = _open_link(settings, clock, stack)
        coord: Coordinator = RedisCoordinator(link) if link else LocalCoordinator()
        budget = CallBudget(
            clock,
            per_window=settings.nowplaying_call_budget_30s,
            per_day=settings.nowplaying_call_budget_day,
            ledger=coord.ledger(),
        )
        client = SpotifyClient(
            http,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            accounts_url=accounts_url,
            api_url=api_url,
            clock=clock,
            budget=budget,
        )
        tokens = TokenManager(client, store, clock, coord=coord)
        stack.push_async_callback(tokens.flush)  # before the store closes (the stack unwinds)
        problems = AccountProblems(clock, link=link)
        alerter = None
        if alerts:
            alerter = await _start_alerts(
                settings, store=store, clock=clock, public_origin=public_origin, stack=stack,
                link=link,
            )  # fmt: skip
        reads = Reads(
            SpotifySource(tokens, client), accounts=store, problems=problems, notices=alerter
        )
        hub = LiveHub(
            reads,
            clock,
            schedule=_schedule(settings),
            pause=AppPause(clock, coord, store=store, notices=alerter),
            coord=coord,
            budget=budget,
            ready=functools.partial(account_ready, store),
        )
        await hub.start()
        stack.push_async_callback(hub.close)
        yield Runtime(
            settings, clock, store, http, client, tokens, hub, coord, problems, alerter, budget
        )
