"""Fixtures of the web tests: the app on a store behind a probe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from harness.app import Env, open_env

from nowplaying.clock import FakeClock


@pytest.fixture
async def probed(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Env]:
    """``env`` on a real store behind a probe (``probed.probe``): calls counted, the store can
    be taken down or made to fail chosen calls, and every token its cipher opens is listed."""
    async with open_env(tmp_path, clock, probed=True) as e:
        yield e
