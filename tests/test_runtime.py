"""The wiring: every client built from the settings on the one HTTP client; in demo mode the
simulated Spotify, Last.fm and ListenBrainz are served on the app's origin and called in-process;
a process loads the clients its settings name, and no others."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from harness.app import make_settings
from harness.browser import demo_settings

from nowplaying.clock import FakeClock
from nowplaying.config import DEMO_LASTFM_API_KEY
from nowplaying.runtime import Runtime, demo_simulator
from nowplaying.simulator import Simulator
from nowplaying.simulator.lastfm import Scrobble
from nowplaying.web import create_app
from nowplaying.web.state import Services

pytestmark = pytest.mark.anyio
ORIGIN = "http://127.0.0.1:8123"


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime, Simulator]]:
    """A demo-mode app (no Spotify app configured) through its lifespan, and its simulator."""
    clock = FakeClock()
    settings = demo_settings(8123, tmp_path)
    sim = demo_simulator(settings, clock, ORIGIN)
    app = create_app(settings, clock=clock, simulator=sim)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as client,
    ):
        services: Services = app.state.services
        yield client, services.runtime, sim


async def test_demo_serves_the_simulated_lastfm_and_listenbrainz(
    demo: tuple[httpx.AsyncClient, Runtime, Simulator],
) -> None:
    """/lastfm-sim/2.0/ answers for the demo key, /lastfm-sim/api/auth/ is the consent page,
    /listenbrainz-sim/1/... the ListenBrainz API, as /spotify-sim is Spotify's."""
    client, rt, _ = demo
    params = {
        "method": "user.getrecenttracks",
        "user": "demo",
        "api_key": DEMO_LASTFM_API_KEY,
        "format": "json",
    }
    recent = await client.get("/lastfm-sim/2.0/", params=params)
    assert recent.status_code == 200, recent.text
    assert recent.json()["recenttracks"]["@attr"]["user"] == "demo"
    consent = await client.get("/lastfm-sim/api/auth/", params={"api_key": DEMO_LASTFM_API_KEY})
    assert consent.status_code == 200 and "<form" in consent.text
    playing = await client.get("/listenbrainz-sim/1/user/demo/playing-now")
    assert playing.status_code == 200 and playing.json()["payload"]["count"] == 0
    assert rt.lastfm_auth_url == f"{ORIGIN}/lastfm-sim/api/auth/"
    assert rt.settings.lastfm_configured


async def test_demo_clients_read_the_simulators_in_process(
    demo: tuple[httpx.AsyncClient, Runtime, Simulator],
) -> None:
    """The runtime's Last.fm and ListenBrainz clients, on the one HTTP client, read what the
    demo's simulators play (nothing leaves the process)."""
    _, rt, sim = demo
    sim.lastfm.play("demo", Scrobble("Artist", "Scrobbled", duration=200))
    sim.listenbrainz.play("demo", {"artist_name": "LB Artist", "track_name": "Listened"})
    playing, _ = await rt.lastfm.now_playing("demo")
    assert playing.item is not None and playing.item.title == "Scrobbled"
    listened, allowance = await rt.listenbrainz.playing_now("demo")
    assert listened.item is not None and listened.item.title == "Listened"
    assert allowance.remaining is not None
    assert sim.lastfm.calls["user.getrecenttracks"] == 1
    assert sim.listenbrainz.calls["playing-now"] == 1


def test_lastfm_is_configured_by_its_key_and_secret_outside_demo(tmp_path: Path) -> None:
    """Outside demo mode Last.fm needs both settings; the demo key is never used there."""
    configured = make_settings(tmp_path)
    assert configured.lastfm_configured and configured.lastfm_key == "lfkey"
    bare = make_settings(tmp_path, lastfm_api_key="", lastfm_api_secret="")
    assert not bare.lastfm_configured and bare.lastfm_key == ""


ROOT = Path(__file__).resolve().parent.parent

OPEN_AND_LIST = """
import asyncio, json, sys
from pathlib import Path
import nowplaying.cli.main  # what `nowplaying serve` imports
from harness.app import make_settings
from nowplaying.runtime import open_runtime

async def main(tmp: str) -> None:
    async with open_runtime(make_settings(Path(tmp)), public_origin="http://127.0.0.1:8000"):
        loaded = {name.split(".")[0] for name in sys.modules}
    print(json.dumps(sorted(loaded & {"asyncpg", "redis", "paho", "PIL"})))

asyncio.run(main(sys.argv[1]))
"""


def test_a_sqlite_only_process_loads_neither_asyncpg_nor_redis(tmp_path: Path) -> None:
    """SQLite, no NOWPLAYING_REDIS_URL, no MQTT broker: the server's imports and its opened
    runtime leave asyncpg, redis-py and paho-mqtt unloaded, and Pillow until a cover's colours
    are wanted (about 12 MB of RSS they would cost every small install)."""
    done = subprocess.run(
        [sys.executable, "-c", OPEN_AND_LIST, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
