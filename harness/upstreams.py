"""The simulated Last.fm and ListenBrainz on loopback sockets, and the app wired to them (the
Spotify simulator stays in-process at ``http://sim.test``), for the connect flows' tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from harness.app import LASTFM_KEY, LASTFM_SECRET, Env, make_settings, serve_app, simulated
from harness.live_server import free_port, serve
from nowplaying.clock import FakeClock, SystemClock
from nowplaying.simulator.lastfm import LastFm
from nowplaying.simulator.listenbrainz import ListenBrainz


@dataclass
class Upstreams:
    """The simulated Last.fm and ListenBrainz, and the base URL each is served at."""

    fm: LastFm
    fm_url: str
    lb: ListenBrainz
    lb_url: str

    def settings(self) -> dict[str, Any]:
        """The settings that point the app at them."""
        return {
            "lastfm_api_key": LASTFM_KEY,
            "lastfm_api_secret": LASTFM_SECRET,
            "lastfm_api_url": f"{self.fm_url}/2.0/",
            "lastfm_auth_url": f"{self.fm_url}/api/auth/",
            "listenbrainz_api_url": self.lb_url,
        }


@contextlib.contextmanager
def served_upstreams() -> Iterator[Upstreams]:
    """Both simulators on the system clock (their tokens' lifetimes are real time)."""
    fm = LastFm(SystemClock(), api_key=LASTFM_KEY, api_secret=LASTFM_SECRET)
    lb = ListenBrainz(SystemClock())
    with serve(fm.app, free_port()) as fm_url, serve(lb.app, free_port()) as lb_url:
        yield Upstreams(fm, fm_url, lb, lb_url)


@contextlib.asynccontextmanager
async def env_with_upstreams(
    tmp_path: Path, clock: FakeClock, up: Upstreams, **overrides: Any
) -> AsyncIterator[Env]:
    """The app (as ``open_env``) whose HTTP client reaches the Spotify simulator in-process and
    everything else, Last.fm and ListenBrainz included, over real sockets."""
    settings = make_settings(tmp_path, **{**up.settings(), **overrides})
    async with simulated(clock) as (sim, sim_http):
        transport = httpx.ASGITransport(app=sim.app)
        async with (
            httpx.AsyncClient(mounts={"http://sim.test": transport}) as http,
            serve_app(settings, sim, http, clock) as env,
        ):
            env.sim_http = sim_http
            yield env
