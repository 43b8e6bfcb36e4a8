"""The whole app against the simulator, in-process, on a fake clock (what ``env`` is made of)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
from starlette.applications import Starlette

from harness.helpers import connect
from harness.stores import CountingCipher, ProbedStore
from nowplaying.clock import FakeClock
from nowplaying.config import Settings
from nowplaying.crypto import TokenCipher
from nowplaying.runtime import (
    LASTFM_SIM_PREFIX,
    LISTENBRAINZ_SIM_PREFIX,
    make_cipher,
    simulated_upstreams,
)
from nowplaying.simulator import Simulator
from nowplaying.store import Store, open_store
from nowplaying.web import create_app
from nowplaying.web.state import Services

ORIGIN = "https://np.test"
SAME = {"Origin": ORIGIN}
"""The headers of a same-origin request (what the owner's browser sends on a POST)."""
SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"
CLIENT_ID = "cid"
CLIENT_SECRET = "csecret-for-tests"
"""The Spotify app the simulator knows and the settings name."""
LASTFM_KEY = "lfkey"
LASTFM_SECRET = "lfsecret"
"""The Last.fm API account the simulated Last.fm knows and the settings name."""


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for the app at ``ORIGIN`` against the simulator at ``http://sim.test`` (its
    Last.fm and ListenBrainz under their demo prefixes there)."""
    values: dict[str, Any] = {
        "spotify_client_id": CLIENT_ID,
        "spotify_client_secret": CLIENT_SECRET,
        "spotify_redirect_uri": f"{ORIGIN}/callback",
        "spotify_accounts_url": "http://sim.test",
        "spotify_api_url": "http://sim.test/v1",
        "nowplaying_secret_key": SECRET_KEY,
        "nowplaying_database_url": f"sqlite:///{tmp_path}/nowplaying.sqlite3",
        "nowplaying_image_origins": ["http://sim.test"],
        "lastfm_api_key": LASTFM_KEY,
        "lastfm_api_secret": LASTFM_SECRET,
        "lastfm_api_url": f"http://sim.test{LASTFM_SIM_PREFIX}/2.0/",
        "lastfm_auth_url": f"http://sim.test{LASTFM_SIM_PREFIX}/api/auth/",
        "listenbrainz_api_url": f"http://sim.test{LISTENBRAINZ_SIM_PREFIX}",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Env:
    """The app, its simulated Spotify, a browser-like client, and the clock they share."""

    app: Starlette
    sim: Simulator
    sim_http: httpx.AsyncClient
    client: httpx.AsyncClient
    clock: FakeClock
    probed: ProbedStore | None = None
    """The store the app was handed, when it was opened with ``probed=True``."""

    @property
    def probe(self) -> ProbedStore:
        """The probe on the app's store (``open_env(..., probed=True)``)."""
        assert self.probed is not None, "open the app with probed=True"
        return self.probed

    @property
    def services(self) -> Services:
        svc: Services = self.app.state.services
        return svc

    async def connect(self, user: str = "demo", login_path: str = "/login") -> httpx.Response:
        """Walk the whole login: /login, the consent page (Agree), /callback."""
        return await connect(self.client, self.sim_http, user=user, login_path=login_path)

    async def publish(self) -> str:
        """Publish the signed-in account (``POST /api/account/publish``): its public id."""
        response = await self.client.post("/api/account/publish", headers=SAME)
        assert response.status_code == 200, response.text
        public_id: str = response.json()["publicId"]
        return public_id


async def published(env: Env) -> str:
    """Publish the signed-in ``demo`` account and drop the engine's state of it, so the next
    request polls again: the public id."""
    public_id = await env.publish()
    await env.services.runtime.hub.forget("demo")
    return public_id


@contextlib.asynccontextmanager
async def simulated(clock: FakeClock) -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    """A fresh simulator that knows the app's client (no gaps between tracks), and a client for
    it at ``http://sim.test`` (Last.fm and ListenBrainz under their demo prefixes)."""
    sim = Simulator(
        clock=clock,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=(f"{ORIGIN}/callback",),
    )
    sim.player("demo").set_gaps(0)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=simulated_upstreams(sim, spotify_prefix="")),
        base_url="http://sim.test",
    ) as sim_http:
        yield sim, sim_http


@contextlib.asynccontextmanager
async def serve_app(
    settings: Settings,
    sim: Simulator,
    sim_http: httpx.AsyncClient,
    clock: FakeClock,
    *,
    raise_app_exceptions: bool = True,
    probed: bool = False,
) -> AsyncIterator[Env]:
    """The app on ``settings``, through its lifespan, against ``sim``; with ``probed``, handed
    the store of ``settings`` behind a :class:`ProbedStore` (and its cipher counting)."""
    async with contextlib.AsyncExitStack() as stack:
        probe = None
        if probed:
            cipher = CountingCipher(make_cipher(settings))
            inner = open_store(settings.nowplaying_database_url, cipher=cast(TokenCipher, cipher))
            await inner.open()
            stack.push_async_callback(inner.close)
            probe = ProbedStore(inner, cipher)
        app = create_app(settings, http=sim_http, clock=clock, store=cast(Store | None, probe))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url=ORIGIN)
        )
        yield Env(app=app, sim=sim, sim_http=sim_http, client=client, clock=clock, probed=probe)


@contextlib.asynccontextmanager
async def open_env(
    tmp_path: Path,
    clock: FakeClock,
    *,
    raise_app_exceptions: bool = True,
    probed: bool = False,
    **overrides: Any,
) -> AsyncIterator[Env]:
    """The app on ``make_settings(tmp_path, **overrides)``, wired to a fresh simulator.

    With ``raise_app_exceptions=False`` an unhandled error reaches the client as the 500 a
    browser would see (the property tests assert there is none) instead of raising in the test;
    with ``probed=True`` the app's store is behind a probe (``Env.probe``).
    """
    settings = make_settings(tmp_path, **overrides)
    async with (
        simulated(clock) as (sim, sim_http),
        serve_app(
            settings, sim, sim_http, clock, raise_app_exceptions=raise_app_exceptions, probed=probed
        ) as env,
    ):
        yield env
