"""Wiring: the long-lived parts (store, HTTP client, Spotify client, tokens, live engine) built
from settings, for the web app's lifespan and for the CLI commands alike.

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
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.routing import Mount

from nowplaying.clock import Clock, SystemClock
from nowplaying.config import Settings
from nowplaying.coord.base import Coordinator, LocalCoordinator
from nowplaying.coord.redis import RedisCoordinator
from nowplaying.crypto import TokenCipher
from nowplaying.engine.live import LiveHub
from nowplaying.engine.problems import AccountProblems
from nowplaying.models import NowPlaying, PlayedItem
from nowplaying.ops.alerts import Alerter, LocalClaims, RedisClaims
from nowplaying.simulator import Simulator
from nowplaying.sources.budget import CallBudget
from nowplaying.sources.spotify.client import (
    SCOPE_RECENTLY_PLAYED,
    Forbidden,
    RateLimited,
    ReconnectRequired,
    SpotifyClient,
)
from nowplaying.sources.spotify.grants import TokenManager
from nowplaying.store import AccountStatus, Store, StoreError, open_store

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


async def read_now_playing(
    tokens: TokenManager,
    client: SpotifyClient,
    account_id: str,
    problems: AccountProblems | None = None,
    alerts: Alerter | None = None,
) -> NowPlaying:
    """One upstream read of what the account plays (tokens handled); a 403 is noted in
    ``problems`` (what the owner must fix), an answer clears it; a lost grant and a long pause
    are handed to ``alerts`` (queued, never waited for)."""
    try:
        playing = await tokens.call(account_id, client.currently_playing)
    except Forbidden as e:
        if problems is not None:
            await problems.note(account_id, e)
        raise
    except ReconnectRequired:
        if alerts is not None:
            alerts.reconnect_needed(account_id)
        raise
    except RateLimited as e:
        if alerts is not None:
            alerts.paused(e.retry_after, e.reason)
        raise
    if problems is not None:
        await problems.clear(account_id)
    return playing


async def read_last_played(
    store: Store, tokens: TokenManager, client: SpotifyClient, account_id: str
) -> PlayedItem | None:
    """The last track played, when the owner shows it and the grant allows it."""
    account = await store.get_account_info(account_id)
    if account is None or not account.show_last_played:
        return None
    if SCOPE_RECENTLY_PLAYED not in account.scopes:
        return None

    async def read(token: str) -> list[PlayedItem]:
        return await client.recently_played(token, limit=1)

    items = await tokens.call(account_id, read)
    return items[0] if items else None


async def account_ready(store: Store, account_id: str) -> bool:
    """Whether an account that needed reconnecting holds a usable grant again."""
    account = await store.get_account_info(account_id)
    return account is not None and account.status is AccountStatus.ACTIVE


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
    redis: aioredis.Redis | None,
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
        claims=RedisClaims(redis, clock) if redis is not None else LocalClaims(clock, sent_file),
        owner_url=f"{public_origin}/",
    )
    await alerter.start()
    stack.push_async_callback(alerter.close)
    return alerter


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
        if http is None:
            transport = None
            if simulator is not None:
                sim_app = Starlette(routes=[Mount(SIM_PREFIX, app=simulator.app)])
                transport = httpx.ASGITransport(app=sim_app)
            http = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, follow_redirects=False)
            )
        if simulator is not None and settings.demo:
            accounts_url = f"{public_origin}{SIM_PREFIX}"
            api_url = f"{accounts_url}/v1"
        else:
            accounts_url, api_url = settings.spotify_accounts_url, settings.spotify_api_url
        coord: Coordinator = (
            RedisCoordinator(settings.nowplaying_redis_url, clock=clock)
            if settings.nowplaying_redis_url
            else LocalCoordinator()
        )
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
        shared = None
        if settings.nowplaying_redis_url:
            # One small client for the owner-facing notes (refusals, alert claims); bounded I/O.
            shared = aioredis.Redis.from_url(
                settings.nowplaying_redis_url, socket_timeout=1, socket_connect_timeout=1
            )
            stack.push_async_callback(shared.aclose)
        problems = AccountProblems(clock, redis=shared)
        alerter = (
            await _start_alerts(
                settings,
                store=store,
                clock=clock,
                public_origin=public_origin,
                stack=stack,
                redis=shared,
            )
            if alerts
            else None
        )
        hub = LiveHub(
            functools.partial(read_now_playing, tokens, client, problems=problems, alerts=alerter),
            clock,
            poll_seconds=settings.nowplaying_poll_seconds,
            budget=budget,
            poll_floor=settings.nowplaying_poll_floor_seconds,
            poll_ceiling=settings.nowplaying_poll_ceiling_seconds,
            history=functools.partial(read_last_played, store, tokens, client),
            coord=coord,
            pauses=store,
            ready=functools.partial(account_ready, store),
        )
        await hub.start()
        stack.push_async_callback(hub.close)
        yield Runtime(
            settings, clock, store, http, client, tokens, hub, coord, problems, alerter, budget
        )
