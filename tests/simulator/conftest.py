"""Fixtures of the simulator's tests: a fake clock, the simulator in-process and on a socket.

Names carry a ``sim_`` prefix so they cannot be taken for the app's own fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from harness.live_server import free_port, serve
from harness.simulated import BASE, LiveServer, SimEnv

from nowplaying.clock import FakeClock, SystemClock
from nowplaying.simulator import Simulator


@pytest.fixture
def sim_clock() -> FakeClock:
    """A clock that only moves when the test says so."""
    return FakeClock()


@pytest.fixture
async def sim_env(sim_clock: FakeClock) -> AsyncIterator[SimEnv]:
    """A simulator with its defaults on a fake clock, and an in-process HTTP client for it."""
    sim = Simulator(clock=sim_clock)
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        yield SimEnv(sim, http, sim_clock)


@pytest.fixture
def sim_live() -> Iterator[LiveServer]:
    """A simulator (real clock) listening on 127.0.0.1, stopped after the test."""
    sim = Simulator(clock=SystemClock())
    port = free_port()
    with serve(sim.app, port, lifespan="off", ws="none", timeout_graceful_shutdown=1) as url:
        yield LiveServer(sim, url)
