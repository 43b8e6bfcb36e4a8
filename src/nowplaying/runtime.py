"""Wiring only: the long-lived parts built from settings, for the app's lifespan and the CLI alike.

In demo mode the built-in simulator plays Spotify, Last.fm and ListenBrainz: the browser reaches
them under ``/spotify-sim``, ``/lastfm-sim`` and ``/listenbrainz-sim`` on the app's own origin,
and the server's calls go to them in-process.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from nowplaying.clock import Clock, SystemClock
from nowplaying.config import Settings
from nowplaying.coord.base import CoordinationError, Coordinator, LocalCoordinator, NamedLock
from nowplaying.crypto import TokenCipher
from nowplaying.engine.accounts import account_ready
from nowplaying.engine.live import LiveHub
from nowplaying.engine.pause import AppPause
from nowplaying.engine.problems import AccountProblems
from nowplaying.engine.pulls import Pull, Pulls
from nowplaying.engine.reads import Reads
from nowplaying.engine.schedule import Schedule
from nowplaying.models import SourceKind
from nowplaying.ops.alerts import Alerter, LocalClaims, RedisClaims
from nowplaying.simulator import Simulator, coverart
from nowplaying.sources.base import Source
from nowplaying.sources.budget import CallBudget, rate_budget
from nowplaying.sources.lastfm import LastFmClient
from nowplaying.sources.listenbrainz import ListenBrainzClient
from nowplaying.sources.pull import LastFmSource, LinkCache, Links, ListenBrainzSource
from nowplaying.sources.spotify.client import SpotifyClient
from nowplaying.sources.spotify.grants import TokenManager
from nowplaying.sources.spotify.source import SpotifySource
from nowplaying.store import Store, StoreError, open_store
from nowplaying.store.kept import KeptTokens

if TYPE_CHECKING:  # redis-py is loaded only when NOWPLAYING_REDIS_URL is set
    from nowplaying.coord.link import RedisLink

SIM_PREFIX = "/spotify-sim"
LASTFM_SIM_PREFIX = "/lastfm-sim"
"""The simulated Last.fm in demo mode: its API at ``/lastfm-sim/2.0/``, web auth at
``/lastfm-sim/api/auth/``."""
LISTENBRAINZ_SIM_PREFIX = "/listenbrainz-sim"
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
    lastfm: LastFmClient
    """Last.fm's client (its key and secret from the settings; the simulated one in demo)."""
    listenbrainz: ListenBrainzClient
    lastfm_auth_url: str
    """Where an owner allows this app on Last.fm (``LASTFM_AUTH_URL``; the simulator's in demo)."""
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
    """The simulator demo mode serves, registered for the configured redirect URI (and its
    Last.fm for the demo API key)."""
    sim = Simulator(
        clock=clock,
        client_id=settings.client_id,
        client_secret=settings.client_secret.get_secret_value(),
        redirect_uris=(settings.spotify_redirect_uri,),
        public_url=f"{public_origin}{SIM_PREFIX}",
    )
    sim.lastfm.keys[settings.lastfm_key] = settings.lastfm_secret.get_secret_value()
    sim.lastfm.image_host = f"{public_origin}{LASTFM_SIM_PREFIX}/i/u"  # its art from here too
    return sim


def simulator_mounts(simulator: Simulator, spotify_prefix: str = SIM_PREFIX) -> list[Mount]:
    """The simulated Spotify at ``spotify_prefix``, Last.fm and ListenBrainz at theirs (Spotify's
    last: its prefix may be ``""``)."""
    for app in (simulator.app, simulator.lastfm.app, simulator.listenbrainz.app):
        # A Starlette app's trailing-slash redirect would copy the Host header's port.
        app.router.redirect_slashes = False
    return [
        Mount(LASTFM_SIM_PREFIX, simulator.lastfm.app),
        Mount(LISTENBRAINZ_SIM_PREFIX, simulator.listenbrainz.app),
        Mount(spotify_prefix, simulator.app),
    ]


def simulated_upstreams(simulator: Simulator, spotify_prefix: str = SIM_PREFIX) -> Starlette:
    """Every simulated upstream as one ASGI app, for the one HTTP client."""
    app = Starlette(routes=simulator_mounts(simulator, spotify_prefix))
    app.router.redirect_slashes = False
    return app


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


@dataclass(frozen=True, slots=True)
class Upstreams:
    """Where the clients call: the configured services, or the simulators' in demo mode."""

    accounts_url: str
    api_url: str
    lastfm_api_url: str
    lastfm_auth_url: str
    listenbrainz_api_url: str

    @classmethod
    def of(cls, settings: Settings, public_origin: str, simulated: bool) -> Upstreams:
        if simulated and settings.demo:
            lastfm = f"{public_origin}{LASTFM_SIM_PREFIX}"
            return cls(
                f"{public_origin}{SIM_PREFIX}",
                f"{public_origin}{SIM_PREFIX}/v1",
                f"{lastfm}/2.0/",
                f"{lastfm}/api/auth/",
                f"{public_origin}{LISTENBRAINZ_SIM_PREFIX}",
            )
        return cls(
            settings.spotify_accounts_url,
            settings.spotify_api_url,
            settings.lastfm_api_url,
            settings.lastfm_auth_url,
            settings.listenbrainz_api_url,
        )


def coverart_url(settings: Settings, public_origin: str, demo: bool) -> str:
    """The Cover Art Archive covers come from: the simulator's, in demo mode."""
    if demo and settings.demo:
        return f"{public_origin}{SIM_PREFIX}{coverart.ARCHIVE_PREFIX}"
    return settings.coverart_url


async def _open_http(
    stack: contextlib.AsyncExitStack, simulator: Simulator | None
) -> httpx.AsyncClient:
    """The one HTTP client for upstream calls (to the simulator in-process, when given one)."""
    transport = None
    if simulator is not None:
        transport = httpx.ASGITransport(app=simulated_upstreams(simulator))
    return await stack.enter_async_context(
        httpx.AsyncClient(transport=transport, follow_redirects=False)
    )


def _open_link(
    settings: Settings, clock: Clock, stack: contextlib.AsyncExitStack
) -> RedisLink | None:
    """The process's one Redis client, when ``NOWPLAYING_REDIS_URL`` is set (closed last)."""
    if not settings.nowplaying_redis_url:
        return None
    from nowplaying.coord.link import RedisLink  # noqa: PLC0415 - only with a Redis URL

    link = RedisLink(settings.nowplaying_redis_url, clock=clock)
    stack.push_async_callback(link.close)
    return link


def _spotify(
    settings: Settings, http: httpx.AsyncClient, clock: Clock, coord: Coordinator, up: Upstreams
) -> tuple[SpotifyClient, CallBudget]:
    """Spotify's client and the app's call budget it spends from."""
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
        accounts_url=up.accounts_url,
        api_url=up.api_url,
        clock=clock,
        budget=budget,
    )
    return client, budget


def pull_clients(
    settings: Settings, http: httpx.AsyncClient, clock: Clock, up: Upstreams
) -> tuple[LastFmClient, ListenBrainzClient]:
    """Last.fm's and ListenBrainz's clients, on the one HTTP client."""
    lastfm = LastFmClient(
        http,
        clock,
        api_key=settings.lastfm_key,
        api_secret=settings.lastfm_secret.get_secret_value(),
        api_url=up.lastfm_api_url,
    )
    return lastfm, ListenBrainzClient(http, clock, api_url=up.listenbrainz_api_url)


async def _open_tokens(
    settings: Settings,
    client: SpotifyClient,
    store: Store,
    clock: Clock,
    *,
    coord: Coordinator,
    stack: contextlib.AsyncExitStack,
    keeps: bool,
) -> TokenManager:
    """The token manager; ``keeps``: with the file of kept tokens, stored first (restore)."""
    path = settings.kept_tokens_path if keeps else None
    kept = KeptTokens(path, make_cipher(settings)) if path else None
    tokens = TokenManager(client, store, clock, coord=coord, kept=kept)
    await tokens.restore()  # the kept tokens go into the store before anything reads it
    stack.push_async_callback(tokens.flush)  # before the store closes (the stack unwinds)
    return tokens


def _coordinator(link: RedisLink | None, store: Store) -> Coordinator:
    """Redis's, its locks held in PostgreSQL too (when the store is), or this process's."""
    if link is None:
        return LocalCoordinator()
    from nowplaying.coord.redis import RedisCoordinator  # noqa: PLC0415 - only with Redis

    return RedisCoordinator(link, database_lock=database_lock(store))


def database_lock(store: Store, *, wait: float = 4.0) -> NamedLock | None:
    """PostgreSQL's advisory lock for the coordinator's locks, so refreshes serialise while
    Redis is unreachable (SQLite runs one process: its locks need no database); a holder
    elsewhere is waited for ``wait`` seconds."""
    # A PostgresStore exists only once its module (and asyncpg) is loaded: a SQLite-only
    # process never imports either just to tell that its store is not one.
    postgres = sys.modules.get("nowplaying.store.postgres")
    if postgres is None or not isinstance(store, postgres.PostgresStore):
        return None

    @contextlib.asynccontextmanager
    async def lock(name: str) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as held:
            try:
                await held.enter_async_context(store.lock(name, wait=wait))
            except StoreError as e:
                raise CoordinationError(f"lock {name!r}: {e}") from e
            yield

    return lock


def pull_sources(
    settings: Settings,
    clock: Clock,
    *,
    links: Links,
    coord: Coordinator,
    problems: AccountProblems,
    clients: tuple[LastFmClient, ListenBrainzClient],
) -> Pulls:
    """Last.fm and ListenBrainz as the widgets' pull sources, each within its own budget (its
    own ledger, shared by every instance) and its seconds per account."""
    lastfm, listenbrainz = clients
    cache = LinkCache(links)
    lastfm_budget = rate_budget(
        clock, settings.nowplaying_lastfm_calls_per_second, coord.ledger("lastfm")
    )
    lb_budget = rate_budget(
        clock, settings.nowplaying_listenbrainz_calls_per_second, coord.ledger("listenbrainz")
    )
    lastfm_reads = Reads(
        LastFmSource(lastfm, cache, lastfm_budget), problems=problems, kind=SourceKind.LASTFM
    )
    lb_reads = Reads(
        ListenBrainzSource(listenbrainz, cache, lb_budget),
        problems=problems,
        kind=SourceKind.LISTENBRAINZ,
    )
    return Pulls(
        [
            Pull(lastfm_reads, lastfm_budget, _schedule(
                settings, floor=settings.nowplaying_lastfm_seconds_per_account
            )),
            Pull(lb_reads, lb_budget, _schedule(settings)),
        ],
        cache,
        clock,
    )  # fmt: skip


def _schedule(settings: Settings, floor: float | None = None) -> Schedule:
    return Schedule(
        poll_seconds=settings.nowplaying_poll_seconds,
        floor=floor or settings.nowplaying_poll_floor_seconds,
        ceiling=max(floor or 0.0, settings.nowplaying_poll_ceiling_seconds),
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
    server: bool = False,
) -> AsyncIterator[Runtime]:
    """Open everything; close what was opened here (injected parts stay the caller's).
    ``server``: run what only the server runs, the owner alerts and the file of kept refresh
    tokens (a CLI command does neither)."""
    clock = clock or SystemClock()
    async with contextlib.AsyncExitStack() as stack:
        # The kept-token file belongs to the database opened here, or to a configured state dir.
        keeps = server and (store is None or settings.nowplaying_state_dir is not None)
        if store is None:
            store = open_store(settings.nowplaying_database_url, cipher=make_cipher(settings))
            await store.open()
            stack.push_async_callback(store.close)
            await report_unreadable(store)
        http = http or await _open_http(stack, simulator)
        up = Upstreams.of(settings, public_origin, simulator is not None)
        link = _open_link(settings, clock, stack)
        coord = _coordinator(link, store)
        client, budget = _spotify(settings, http, clock, coord, up)
        tokens = await _open_tokens(
            settings, client, store, clock, coord=coord, stack=stack, keeps=keeps
        )
        problems = AccountProblems(clock, link=link)
        alerter = None
        if server:
            alerter = await _start_alerts(
                settings, store=store, clock=clock, public_origin=public_origin, stack=stack,
                link=link,
            )  # fmt: skip
        reads = Reads(
            SpotifySource(tokens, client), accounts=store, problems=problems, notices=alerter
        )
        lastfm, listenbrainz = pull_clients(settings, http, clock, up)
        hub = LiveHub(
            reads,
            clock,
            schedule=_schedule(settings),
            pause=AppPause(clock, coord, store=store, notices=alerter),
            coord=coord,
            budget=budget,
            ready=functools.partial(account_ready, store),
            pulls=pull_sources(
                settings,
                clock,
                links=store,
                coord=coord,
                problems=problems,
                clients=(lastfm, listenbrainz),
            ),
        )
        await hub.start()
        stack.push_async_callback(hub.close)
        yield Runtime(
            settings,
            clock,
            store,
            http,
            client,
            tokens,
            hub,
            lastfm,
            listenbrainz,
            lastfm_auth_url=up.lastfm_auth_url,
            coord=coord,
            problems=problems,
            alerts=alerter,
            budget=budget,
        )
