"""The app factory, :func:`create_app`: nothing happens at import time.

In demo mode the built-in simulator is mounted at ``/spotify-sim`` (its Last.fm at ``/lastfm-sim``,
its ListenBrainz at ``/listenbrainz-sim``): the browser reaches the consent pages on the same
origin, and the server's calls go to them in-process.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from nowplaying.cards.covers import (
    ARCHIVE_HOSTS,
    LASTFM_IMAGE_HOSTS,
    SPOTIFY_IMAGE_HOSTS,
    CoverFetcher,
)
from nowplaying.clock import Clock, SystemClock
from nowplaying.config import Settings
from nowplaying.crypto import CryptoError
from nowplaying.ops.logs import REQUEST_ID_HEADER, current_request_id
from nowplaying.ops.metrics import Metrics
from nowplaying.ops.mqtt import start_mqtt
from nowplaying.ops.webhooks import Webhooks
from nowplaying.runtime import (
    LASTFM_SIM_PREFIX,
    LISTENBRAINZ_SIM_PREFIX,
    SIM_PREFIX,
    Runtime,
    coverart_url,
    demo_simulator,
    open_runtime,
    simulator_mounts,
)
from nowplaying.schema import ErrorCode, error
from nowplaying.simulator import Simulator
from nowplaying.sources.push import MAX_BODY_BYTES
from nowplaying.store import Store, StoreError
from nowplaying.web import (
    api,
    auth,
    connect,
    dropin,
    metrics,
    openapi,
    overlay,
    owner,
    pages,
    previews,
    public,
    push,
    recent,
    styles,
    webhooks,
)
from nowplaying.web.edge import Edge
from nowplaying.web.errors import PRIVATE, PRIVATE_RAW, Refusal, json_response
from nowplaying.web.fast import FastAnswers
from nowplaying.web.grip import start_grip
from nowplaying.web.limits import rules
from nowplaying.web.published import PublishedAccounts
from nowplaying.web.security import origin_of
from nowplaying.web.sessions import Sessions
from nowplaying.web.sse import Streams
from nowplaying.web.state import Services

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def create_app(
    settings: Settings,
    *,
    http: httpx.AsyncClient | None = None,
    store: Store | None = None,
    clock: Clock | None = None,
    simulator: Simulator | None = None,
    grip_http: httpx.AsyncClient | None = None,
) -> Starlette:
    """Build the app. ``http``, ``store``, ``clock`` and ``simulator`` are injectable for tests,
    and ``grip_http``, the client that publishes to Pushpin (when GRIP is configured)."""
    clock = clock or SystemClock()
    public_origin = origin_of(settings.spotify_redirect_uri)
    app_metrics = Metrics()
    if settings.demo and simulator is None:
        simulator = demo_simulator(settings, clock, public_origin)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(
            settings,
            public_origin=public_origin,
            http=http,
            store=store,
            clock=clock,
            simulator=simulator,
            server=True,
        ) as rt:
            app_metrics.watch(rt.http)
            app_metrics.bind(rt.hub, rt.tokens)
            hooks = Webhooks(
                rt.hub,
                rt.store,
                rt.clock,
                allowed_hosts=settings.nowplaying_webhook_allowed_hosts,
            )
            await hooks.start()
            bridge = await start_mqtt(settings, rt.hub, rt.store, rt.clock)
            try:
                app.state.services = web_services(rt, public_origin, simulator, app_metrics)
                app.state.services.webhooks = hooks
                svc = app.state.services
                svc.grip = start_grip(settings, rt.hub, rt.clock, svc.streams, grip_http)
                yield
            finally:
                if app.state.services.grip is not None:
                    await app.state.services.grip.close()
                if bridge is not None:
                    await bridge.close()
                await hooks.close()
                services = getattr(app.state, "services", None)
                if services is not None:
                    services.cards.close()  # the PNG worker process, if one started

    fast = FastAnswers(clock)
    app_metrics.count_fast(fast.counts)
    app = Starlette(
        routes=routes(simulator),
        lifespan=lifespan,
        middleware=middleware(settings, app_metrics, clock, fast),
        exception_handlers={
            Refusal: _refused,
            HTTPException: _http_error,
            StoreError: _store_down,
            CryptoError: _unopenable,
            Exception: _server_error,
        },
    )
    # Starlette's trailing-slash redirect builds its Location from the Host header (and a path
    # like //evil.example/ would become a protocol-relative one): a trailing slash is a 404.
    app.router.redirect_slashes = False
    app.state.metrics = app_metrics
    app.state.fast = fast
    return app


def web_services(
    rt: Runtime, public_origin: str, simulator: Simulator | None, app_metrics: Metrics
) -> Services:
    """The web's parts around the runtime, as handlers reach them."""
    settings = rt.settings
    caa = coverart_url(settings, public_origin, simulator is not None)
    demo_origin = (public_origin,) if simulator is not None else ()
    return Services(
        runtime=rt,
        sessions=Sessions(
            rt.store,
            rt.clock,
            secret=settings.secret_key.get_secret_value(),
            old_secrets=[k.get_secret_value() for k in settings.nowplaying_old_secret_keys],
            secure_prefix=settings.secure_cookies_host_prefix,
            idle_seconds=settings.nowplaying_session_idle_seconds,
            max_seconds=settings.nowplaying_session_max_seconds,
        ),
        public_origin=public_origin,
        simulator=simulator,
        covers=CoverFetcher(
            rt.http,
            allowed_hosts=(
                *SPOTIFY_IMAGE_HOSTS,
                *LASTFM_IMAGE_HOSTS,
                *ARCHIVE_HOSTS,
                caa,
                *settings.nowplaying_image_origins,
                *demo_origin,
            ),
            redirectors=(caa, *ARCHIVE_HOSTS, *demo_origin),
            clock=rt.clock,
        ),
        coverart_url=caa,
        published=PublishedAccounts(rt.store, rt.clock, rt.coord),
        metrics=app_metrics,
        streams=Streams(
            rt.hub,
            rt.clock,
            on_viewers=app_metrics.viewers.inc,
            write_seconds=settings.nowplaying_write_seconds,
            on_stalled=app_metrics.stalled.inc,
        ),
    )


def routes(simulator: Simulator | None) -> list[Route | Mount]:
    """Every route, the simulator's mount in demo mode."""
    found: list[Route | Mount] = [
        # The hot paths first: the router tries each route in turn (before /p/{public_id}); a
        # fixed path fails at its first characters, a pattern costs more to try.
        Route("/api/spotify", api.now_playing),
        Route("/p/{public_id}.svg", public.as_svg),
        Route("/p/{public_id}.json", public.as_json),
        Route("/p/{public_id}.png", public.as_png),
        Route("/", auth.home),
        Route("/login", auth.login),
        Route("/callback", auth.callback),
        Route("/login/lastfm", connect.lastfm_login),
        Route("/callback/lastfm", connect.lastfm_callback),
        Route("/login/listenbrainz", connect.listenbrainz_page),
        Route("/login/listenbrainz", connect.listenbrainz_submit, methods=["POST"]),
        Route("/logout", auth.logout, methods=["POST"]),
        Route("/api/spotify/events", api.events),
        Route("/api/account", owner.get_account),
        Route("/api/account/publish", owner.publish, methods=["POST"]),
        Route("/api/account/rotate", owner.rotate, methods=["POST"]),
        Route("/api/account/unpublish", owner.unpublish, methods=["POST"]),
        Route("/api/account/settings", owner.update_settings, methods=["POST"]),
        Route("/api/account/webhooks", webhooks.collection, methods=["GET", "POST"]),
        Route("/api/account/webhooks/{hook_id}", webhooks.delete, methods=["DELETE"]),
        Route("/api/account/webhooks/{hook_id}/test", webhooks.send_test, methods=["POST"]),
        Route("/api/account/push-token", owner.rotate_push_token, methods=["POST"]),
        Route("/api/account/sources/{kind}", owner.unlink_source, methods=["DELETE"]),
        Route(push.SUBMIT_LISTENS, push.submit_listens, methods=["POST"]),
        Route("/1/validate-token", push.validate_token),
        Route("/hooks/web-scrobbler/{token}", push.web_scrobbler, methods=["POST"]),
        Route("/p/{public_id}/events", public.events),
        Route("/p/{public_id}/open", public.open_item),
        Route("/p/{public_id}/colours", public.colours),
        Route("/p/{public_id}/overlay", overlay.overlay),
        Route("/p/{public_id}/embed.js", dropin.embed_js),
        Route("/p/{public_id}/recent.svg", recent.as_svg),
        Route("/p/{public_id}/recent.json", recent.as_json),
        Route("/p/{public_id}/recent.png", recent.as_png),
        Route("/p/{public_id}/social.png", public.as_social),
        Route("/p/{public_id}", overlay.embed),
        Route("/healthz", api.healthz),
        Route("/metrics", metrics.metrics),
        Route("/favicon.ico", api.favicon),
        Route("/openapi.json", openapi.openapi),
        Route("/oembed", previews.oembed),
        Route("/static/themes.css", styles.themes),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    if simulator is not None:
        found.extend(simulator_mounts(simulator))
    return found


def middleware(
    settings: Settings, app_metrics: Metrics, clock: Clock, fast: FastAnswers | None = None
) -> list[Middleware]:
    """The edge (limits, hosts, security headers, request ids), behind trusted proxies if any."""
    stack = [
        Middleware(
            Edge,
            metrics=app_metrics,
            clock=clock,
            rules=rules(
                login_per_minute=settings.nowplaying_login_rate_per_minute,
                public_per_second=settings.nowplaying_public_rate_per_second,
            ),
            # Load balancers probe /healthz, Prometheus scrapes /metrics, by IP; the rest must
            # name this site.
            hosts=settings.allowed_hosts,
            host_exempt_paths=("/healthz", "/metrics"),
            header_exempt_prefixes=(SIM_PREFIX, LASTFM_SIM_PREFIX, LISTENBRAINZ_SIM_PREFIX),
            # ListenBrainz's documented payload: an import of 1,000 listens of 10,240 bytes.
            large_bodies={push.SUBMIT_LISTENS: MAX_BODY_BYTES},
            observe_latency=bool(settings.nowplaying_metrics_token.get_secret_value()),
            fast=fast,
        ),
    ]
    if settings.nowplaying_trusted_proxies:
        # Believe X-Forwarded-For/-Proto only from the configured proxies.
        stack.insert(
            0,
            Middleware(
                ProxyHeadersMiddleware,
                trusted_hosts=settings.nowplaying_trusted_proxies,
            ),
        )
    return stack


async def _refused(request: Request, exc: Exception) -> Response:
    """Every refusal a handler raises, as its status and ``{"error", "message"}``."""
    assert isinstance(exc, Refusal)  # noqa: S101 - registered for Refusal only
    if request.url.path.startswith("/p/"):
        return exc.response({**public.CORS, **public.NO_CACHE})
    return exc.response(PRIVATE)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    if request.url.path.startswith("/api/") or "json" in request.headers.get("accept", ""):
        return json_response(
            error(_slug(exc.status_code), exc.detail), exc.status_code, headers=exc.headers
        )
    svc = getattr(request.app.state, "services", None)
    page = pages.error_page(
        _slug(exc.status_code).replace("_", " ").capitalize(),
        str(exc.detail),
        status=exc.status_code,
        demo=bool(svc and svc.demo),
    )
    page.headers.update(exc.headers or {})  # a 405's Allow, a 401's WWW-Authenticate
    return page


async def _store_down(request: Request, exc: Exception) -> Response:
    """The database is unreachable: a clear 503; live viewers keep their stream meanwhile."""
    log.error("store unavailable on %s: %s", request.url.path, type(exc.__cause__).__name__)
    headers = {"Retry-After": "5", "Cache-Control": "no-store"}
    if request.url.path.startswith(("/api/", "/p/")):
        return json_response(
            error(ErrorCode.UNAVAILABLE, "Storage is unavailable; try again shortly."),
            503,
            headers=headers,
        )
    svc = getattr(request.app.state, "services", None)
    response = pages.error_page(
        "Temporarily unavailable",
        "Storage is unavailable; please try again in a moment.",
        status=503,
        demo=bool(svc and svc.demo),
    )
    response.headers.update(headers)
    return response


async def _unopenable(request: Request, exc: Exception) -> Response:
    """A grant no configured key opens (the store reports these as ``key_missing`` accounts;
    this is the net under it): answered as a reconnect-required account, never a 500."""
    log.error(
        "an account's grant cannot be opened on %s: check NOWPLAYING_OLD_SECRET_KEYS",
        request.url.path,
    )
    path = request.url.path
    if path.startswith("/p/"):
        if path.endswith((".svg", ".png")):
            return await public.reconnect_card(request)
        return json_response(
            error(ErrorCode.RECONNECT_REQUIRED), headers={**public.CORS, **public.NO_CACHE}
        )
    if path.startswith("/api/"):
        return json_response(error(ErrorCode.RECONNECT_REQUIRED), 401, headers=PRIVATE_RAW)
    svc = getattr(request.app.state, "services", None)
    return pages.error_page(
        "Reconnect needed", pages.UNKNOWN_KEY_TEXT, status=200, demo=bool(svc and svc.demo)
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    """The last resort: log the error type (never its text, which may hold data), answer 500."""
    log.error("unhandled %s on %s", type(exc).__name__, request.url.path)
    rid = current_request_id()
    return json_response(
        error(ErrorCode.INTERNAL, "Something went wrong."),
        500,
        headers={REQUEST_ID_HEADER: rid} if rid else None,
    )


_SLUGS = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    429: ErrorCode.TOO_MANY_REQUESTS,
}


def _slug(status: int) -> ErrorCode:
    return _SLUGS.get(status, ErrorCode.ERROR)
