"""Fixtures of the web tests: the app on a store behind a probe, and the fuzzing app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from harness.app import ORIGIN, Env, open_env
from harness.fuzz import Fuzz, running

from nowplaying.clock import FakeClock


@pytest.fixture
async def probed(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Env]:
    """``env`` on a real store behind a probe (``probed.probe``): calls counted, the store can
    be taken down or made to fail chosen calls, and every token its cipher opens is listed."""
    async with open_env(tmp_path, clock, probed=True) as e:
        yield e


@pytest.fixture
async def fuzz(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Fuzz]:
    """A connected owner and an anonymous browser on one app with the rate limits off."""
    async with running(
        tmp_path, clock, nowplaying_login_rate_per_minute=0, nowplaying_public_rate_per_second=0
    ) as env:
        assert (await env.connect()).status_code == 303
        transport = httpx.ASGITransport(app=env.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as anon:
            yield Fuzz(env, anon)


@pytest.fixture(params=["httptools", "h11"])
def parser(request: pytest.FixtureRequest) -> str:
    """uvicorn's HTTP implementation: the compiled one ``serve`` picks, and the fallback (the
    fast path's and the guard's socket tests run on both)."""
    if request.param == "httptools":
        pytest.importorskip("httptools")
    return str(request.param)
