"""Fixtures of the engine tests: a scripted upstream, the pause as the store keeps it, the
grants, and a started hub holding all three."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from harness.engine import FakeSpotify, Grants, MemoryPauses, make_hub

from nowplaying.clock import FakeClock
from nowplaying.engine.live import LiveHub


@pytest.fixture
def spotify(clock: FakeClock) -> FakeSpotify:
    return FakeSpotify(clock)


@pytest.fixture
def pauses() -> MemoryPauses:
    return MemoryPauses()


@pytest.fixture
def grants() -> Grants:
    return Grants()


@pytest.fixture
async def started_hub(
    spotify: FakeSpotify, clock: FakeClock, pauses: MemoryPauses, grants: Grants
) -> AsyncIterator[LiveHub]:
    h = make_hub(spotify, clock, pauses, grants)
    await h.start()
    yield h
    await h.close()
