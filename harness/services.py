"""The real PostgreSQL and Redis this machine runs, for the scale-out tests.

Tests that need them skip with a clear message when they are absent, unless
NOWPLAYING_REQUIRE_SERVICES=1 (set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

POSTGRES_URL = os.environ.get(
    "NOWPLAYING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("NOWPLAYING_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 1):
            return True
    except OSError:
        return False


def require(url: str, what: str) -> None:
    """Skip (or, in CI, fail) when the service behind ``url`` is not reachable."""
    if _reachable(url):
        return
    message = f"{what} is not reachable at {urlsplit(url).netloc}"
    if os.environ.get("NOWPLAYING_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}, and NOWPLAYING_REQUIRE_SERVICES=1")
    pytest.skip(message)


async def postgres_schema() -> AsyncIterator[str]:
    """A fresh, empty schema for one test; dropped afterwards."""
    require(POSTGRES_URL, "PostgreSQL")
    schema = f"np_test_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        yield schema
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
