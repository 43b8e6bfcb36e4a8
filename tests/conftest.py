"""Shared fixtures: the anyio backend, a fake clock, the app wired to the simulator, Redis.

Hypothesis runs derandomized in CI (``CI`` set to anything but ``false``/``0``, as ``.ci/run``
does, or ``HYPOTHESIS_PROFILE=ci``): the same examples on every run, so a submission cannot fail
by chance; a local run keeps searching at random (``print_blob`` says how to replay a failure).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from harness.app import Env, open_env
from harness.disk import NoDisk
from harness.disk import small_disk as mounted_disk
from harness.services import REDIS_URL, require
from hypothesis import settings as hypothesis_settings

from harness import profiles
from nowplaying.clock import FakeClock

profiles.register()
hypothesis_settings.load_profile(profiles.hypothesis_profile())


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def env(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Env]:
    async with open_env(tmp_path, clock) as e:
        yield e


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for the test (root only: skipped elsewhere)."""
    try:
        with mounted_disk(tmp_path / "disk") as disk:
            yield disk
    except NoDisk as e:
        pytest.skip(str(e))


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
