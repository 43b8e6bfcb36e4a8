"""Failure behaviour of the scale-out parts: the database or Redis going away."""

from __future__ import annotations

import pytest
from harness.app import Env
from harness.helpers import consent, reads_of
from harness.live_server import free_port
from harness.sse import SSEReader

from nowplaying.clock import FakeClock
from nowplaying.coord.redis import RedisCoordinator
from nowplaying.engine.live import LiveHub
from nowplaying.engine.schedule import Schedule
from nowplaying.models import Item, Kind, NowPlaying

pytestmark = pytest.mark.anyio


async def test_database_down_keeps_live_viewers_and_refuses_new_logins(probed: Env) -> None:
    """DB down: an open SSE viewer keeps getting changes; a new login gets a clear 503."""
    connected = probed
    assert (await connected.connect()).status_code == 303
    connected.sim.player("demo").play(0)
    await connected.services.runtime.hub.forget("demo")
    cookie = {"cookie": f"__Host-np_session={connected.client.cookies.get('__Host-np_session')}"}
    async with SSEReader(connected.app, "/api/spotify/events", cookie) as sse:
        await sse.wait_for(1)
        outage = connected.probe
        outage.down = True
        connected.sim.player("demo").skip()
        await connected.clock.advance(5.5)
        events = await sse.wait_for(2)
        assert events[1].data["title"] == '<Intro> & "Outro"'
        login = await connected.client.get("/login")
        assert login.status_code == 503
        assert "Storage is unavailable" in login.text
        await connected.clock.advance(3)  # past the hot-path session cache
        api = await connected.client.get("/api/spotify")
        assert api.status_code == 503
        assert api.json()["error"] == "unavailable"
        assert api.headers["retry-after"]
        outage.down = False
        assert (await connected.client.get("/api/spotify")).status_code == 200
        assert (await connected.client.get("/login")).status_code == 302


async def test_database_down_at_callback_writes_nothing(probed: Env) -> None:
    """The store failing during the callback: 503, and no half-written account or session."""
    env = probed
    login = await env.client.get("/login")
    outage = env.probe
    redirect = await consent(env.sim_http, login.headers["location"])
    outage.down = True
    response = await env.client.get(redirect.headers["location"].replace("https://np.test", ""))
    assert response.status_code == 503
    outage.down = False
    assert await env.services.runtime.store.list_accounts() == []
    assert "np_session" not in response.headers.get("set-cookie", "")


async def test_redis_down_hub_polls_for_itself(clock: FakeClock) -> None:
    """Redis unreachable from the start: the hub still polls and fans out, locally."""
    calls = 0

    async def fetch(account_id: str) -> NowPlaying:
        nonlocal calls
        calls += 1
        it = Item(Kind.TRACK, "t", ("a",), None, None, None, 600_000, uri="t")
        return NowPlaying(True, Kind.TRACK, it, 0, clock.now())

    coord = RedisCoordinator(f"redis://127.0.0.1:{free_port()}/0", retry_every=60)
    hub = LiveHub(reads_of(fetch), clock, schedule=Schedule(poll_seconds=5), coord=coord)
    await hub.start()
    try:
        async with hub.subscribe("acc") as queue:
            await clock.advance(11, step=1)
            assert queue.get_nowait().playing is not None
        assert calls >= 2
        assert coord.degraded
    finally:
        await hub.close()


async def test_store_error_never_500(probed: Env) -> None:
    """Every route answers 503 (never 500) while the store is down."""
    connected = probed
    assert (await connected.connect()).status_code == 303
    outage = connected.probe
    outage.down = True
    await connected.clock.advance(3)
    for path in ("/", "/api/spotify", "/api/account", "/p/abcdefghijklmnopqrstuv.json"):
        response = await connected.client.get(path)
        assert response.status_code == 503, (path, response.status_code)
    card = await connected.client.get("/p/abcdefghijklmnopqrstuv.svg")
    assert card.status_code == 200
    assert "unavailable" in card.text.lower()
    response = await connected.client.post("/logout", headers={"Origin": "https://np.test"})
    assert response.status_code == 503
