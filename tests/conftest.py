"""Shared fixtures: the anyio backend, a fake clock, and the app wired to the simulator.

Hypothesis runs derandomized in CI (``CI`` set to anything but ``false``/``0``, as ``.ci/run``
does, or ``HYPOTHESIS_PROFILE=ci``): the same examples on every run, so a submission cannot fail
by chance; a local run keeps searching at random (``print_blob`` says how to replay a failure).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from harness.helpers import connect
from harness.services import REDIS_URL, require
from hypothesis import settings as hypothesis_settings
from starlette.applications import Starlette

from nowplaying.clock import FakeClock
from nowplaying.config import Settings
from nowplaying.simulator import Simulator
from nowplaying.web import create_app
from nowplaying.web.state import Services

hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("dev", derandomize=False, print_blob=True)


def hypothesis_profile(environ: Mapping[str, str] = os.environ) -> str:
    """``ci`` in CI or when asked for by name, else ``dev`` (random search)."""
    if "HYPOTHESIS_PROFILE" in environ:
        return environ["HYPOTHESIS_PROFILE"]
    in_ci = environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return "ci" if in_ci else "dev"


hypothesis_settings.load_profile(hypothesis_profile())


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# -- the whole app against the simulator, in-process -------------------------------------------

ORIGIN = "https://np.test"
SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "spotify_client_id": "cid",
        "spotify_client_secret": "csecret-for-tests",
        "spotify_redirect_uri": f"{ORIGIN}/callback",
        "spotify_accounts_url": "http://sim.test",
        "spotify_api_url": "http://sim.test/v1",
        "nowplaying_secret_key": SECRET_KEY,
        "nowplaying_database_url": f"sqlite:///{tmp_path}/nowplaying.sqlite3",
        "nowplaying_image_origins": ["http://sim.test"],
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

    @property
    def services(self) -> Services:
        svc: Services = self.app.state.services
        return svc

    async def connect(self, user: str = "demo", login_path: str = "/login") -> httpx.Response:
        """Walk the whole login: /login, the consent page (Agree), /callback."""
        return await connect(self.client, self.sim_http, user=user, login_path=login_path)


@contextlib.asynccontextmanager
async def open_env(
    tmp_path: Path, clock: FakeClock, *, raise_app_exceptions: bool = True, **overrides: Any
) -> AsyncIterator[Env]:
    """The app on ``make_settings(tmp_path, **overrides)``, wired to a fresh simulator.

    With ``raise_app_exceptions=False`` an unhandled error reaches the client as the 500 a
    browser would see (the property tests assert there is none) instead of raising in the test.
    """
    sim = Simulator(
        clock=clock,
        client_id="cid",
        client_secret="csecret-for-tests",
        redirect_uris=(f"{ORIGIN}/callback",),
    )
    sim.player("demo").set_gaps(0)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app), base_url="http://sim.test"
    ) as sim_http:
        app = create_app(make_settings(tmp_path, **overrides), http=sim_http, clock=clock)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client,
        ):
            yield Env(app=app, sim=sim, sim_http=sim_http, client=client, clock=clock)


@pytest.fixture
async def env(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Env]:
    async with open_env(tmp_path, clock) as e:
        yield e


@pytest.fixture
async def connected(env: Env) -> Env:
    """``env`` with the default simulated user connected."""
    response = await env.connect()
    assert response.status_code == 303, response.text
    return env


# -- the real Redis (db 15 unless NOWPLAYING_TEST_REDIS_URL says otherwise) ----------------------


@pytest.fixture
async def flushed() -> AsyncIterator[str]:
    """The test Redis database, emptied before and after."""
    require(REDIS_URL, "Redis")
    client = aioredis.Redis.from_url(REDIS_URL)
    await client.flushdb()
    yield REDIS_URL
    await client.flushdb()
    await client.aclose()
