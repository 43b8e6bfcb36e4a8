"""Shared fixtures: the anyio backend and a fake clock."""

from __future__ import annotations

import pytest

from nowplaying.clock import FakeClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
