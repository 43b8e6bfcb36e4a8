"""Spotify calls and token refreshes per simulated minute: the live engine against a baseline.

Everything runs in-process on a :class:`FakeClock`: the app wired to the simulator by
:mod:`harness.app`, as the tests have it, so a simulated minute costs well under a second.
Upstream calls are counted by the simulator (``sim.calls``): every token request and Web API
request it receives.

- engine, SSE: ``N`` viewers hold ``/api/spotify/events`` open for the minute;
- engine, polling: ``N`` viewers each ``GET /api/spotify`` every 10 s, staggered over the 10 s;
- baseline, polling: what common now-playing widgets do on every request: refresh the access
  token, then call currently-playing (``SpotifyClient.refresh`` + ``currently_playing``).

The listener plays continuously (no silent gaps); the minute starts 27 s before the end of a
track, so one track change happens in it, about the rate of real listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from harness.app import CLIENT_ID, CLIENT_SECRET, make_settings, serve_app, simulated
from harness.helpers import sim_client
from harness.sse import SSEReader
from starlette.applications import Starlette

from nowplaying.clock import FakeClock
from nowplaying.simulator import Simulator

POLL_EVERY = 10.0
STEP = 0.25  # the fake clock moves at most this far at once, so polls land on time
VIEWERS = (1, 10, 100, 1000)


@dataclass(frozen=True)
class Count:
    """Upstream traffic over one window: every call to Spotify, and the token refreshes."""

    calls: int
    refreshes: int

    @classmethod
    def of(cls, calls: Counter[str]) -> Count:
        total = sum(n for endpoint, n in calls.items() if ":" not in endpoint)
        return cls(calls=total, refreshes=calls["token:refresh_token"])


@dataclass(frozen=True)
class Row:
    viewers: int
    seconds: float
    engine_sse: Count
    engine_polling: Count
    baseline_polling: Count


@dataclass
class _World:
    clock: FakeClock
    sim: Simulator
    sim_http: httpx.AsyncClient


@contextlib.asynccontextmanager
async def _world() -> AsyncIterator[_World]:
    clock = FakeClock()
    async with simulated(clock) as (sim, sim_http):
        player = sim.player("demo")
        player.play(1, progress_ms=int(player.playlist[1]["duration_ms"]) - 27_000)
        yield _World(clock, sim, sim_http)


@contextlib.asynccontextmanager
async def _engine(world: _World) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The app, signed in as "demo"; the simulator's counters zeroed after the sign-in."""
    with tempfile.TemporaryDirectory(prefix="np-bench-") as tmp:
        async with _signed_in(world, Path(tmp)) as engine:
            yield engine


@contextlib.asynccontextmanager
async def _signed_in(
    world: _World, tmp: Path
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    async with serve_app(make_settings(tmp), world.sim, world.sim_http, world.clock) as env:
        signed_in = await env.connect()
        if signed_in.status_code != 303:
            raise RuntimeError(f"sign-in failed: {signed_in.status_code}")
        world.sim.reset_calls()
        yield env.app, env.client


async def _run_clock(clock: FakeClock, until: float) -> None:
    if until > clock.now():
        await clock.advance(until - clock.now(), step=STEP)


def _schedule(viewers: int, seconds: float) -> list[float]:
    """Request times: viewer ``i`` starts at ``i/N`` of the interval, then every interval."""
    times = []
    for i in range(viewers):
        t = i * POLL_EVERY / viewers
        while t < seconds:
            times.append(t)
            t += POLL_EVERY
    return sorted(times)


async def _poll(
    clock: FakeClock, viewers: int, seconds: float, request: Callable[[], Awaitable[None]]
) -> None:
    start = clock.now()
    for t in _schedule(viewers, seconds):
        await _run_clock(clock, start + t)
        await request()
    await _run_clock(clock, start + seconds)


async def engine_sse(viewers: int, seconds: float) -> Count:
    async with _world() as world, _engine(world) as (app, client):
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        start = world.clock.now()
        async with contextlib.AsyncExitStack() as stack:
            readers = [
                await stack.enter_async_context(
                    SSEReader(app, "/api/spotify/events", {"cookie": cookie})
                )
                for _ in range(viewers)
            ]
            await asyncio.gather(*(r.wait_for(1, seconds=30) for r in readers))
            # A whole minute [start, start + seconds): a poll due at its very end is the next's.
            await _run_clock(world.clock, start + seconds - 1e-3)
            count = Count.of(world.sim.calls)
            if any(r.status != 200 or not r.events for r in readers):
                raise RuntimeError("an SSE viewer got no event")
        return count


async def engine_polling(viewers: int, seconds: float) -> Count:
    async with _world() as world, _engine(world) as (_, client):

        async def request() -> None:
            response = await client.get("/api/spotify")
            if response.status_code != 200:
                raise RuntimeError(f"/api/spotify answered {response.status_code}")

        await _poll(world.clock, viewers, seconds - 1e-3, request)
        return Count.of(world.sim.calls)


async def baseline_polling(viewers: int, seconds: float) -> Count:
    async with _world() as world:
        refresh_token = world.sim.grant("demo").refresh_token
        assert refresh_token is not None
        spotify = sim_client(
            world.sim_http, world.clock, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        )
        world.sim.reset_calls()

        async def request() -> None:
            token = await spotify.refresh(refresh_token)
            await spotify.currently_playing(token.access_token)

        await _poll(world.clock, viewers, seconds - 1e-3, request)
        return Count.of(world.sim.calls)


async def measure(viewers: int, seconds: float = 60.0) -> Row:
    return Row(
        viewers=viewers,
        seconds=seconds,
        engine_sse=await engine_sse(viewers, seconds),
        engine_polling=await engine_polling(viewers, seconds),
        baseline_polling=await baseline_polling(viewers, seconds),
    )


async def run() -> list[Row]:
    """One simulated minute for each audience size, then one simulated hour for one viewer."""
    rows = [await measure(n) for n in VIEWERS]
    rows.append(await measure(1, seconds=3600.0))
    return rows
