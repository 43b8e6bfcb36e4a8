"""web/sse.py: the app's Streams own their counts, the drain and the framing; "no data yet" is one
view every route answers with its own status."""

from __future__ import annotations

import pytest
from harness.sse import SSEReader

from nowplaying.engine.snapshot import NO_DATA, Snapshot, Status, view_of
from nowplaying.web.sse import Streams
from tests.conftest import ORIGIN, Env

pytestmark = pytest.mark.anyio


def _cookie(env: Env) -> dict[str, str]:
    return {"cookie": f"__Host-np_session={env.client.cookies.get('__Host-np_session')}"}


async def test_drain_is_the_streams_own_and_leaves_the_engine_alone(connected: Env) -> None:
    """``drain`` sets the Streams' flag; the live engine has no drain of its own any more."""
    streams = connected.services.streams
    assert not streams.draining.is_set()
    streams.drain()
    assert streams.draining.is_set()
    assert not hasattr(connected.services.runtime.hub, "draining")
    assert not any(key.startswith("sse") for key in connected.services.runtime.hub.counts)


async def test_each_streams_counts_its_own(connected: Env) -> None:
    """Two Streams on one engine (two apps in one process): each counts and drains its own."""
    mine = connected.services.streams
    other = Streams(connected.services.runtime.hub, connected.clock)
    stream = mine.stream("demo")
    try:
        await anext(stream)  # retry:
        await anext(stream)  # the current state
        assert (mine.counts["open"], other.counts["open"]) == (1, 0)
        other.drain()
        assert not mine.draining.is_set()
    finally:
        await stream.aclose()
    assert mine.counts["open"] == 0


async def test_a_change_is_framed_once_per_app(connected: Env) -> None:
    """The same snapshot gives the very same event text within one Streams, its own in another."""
    snap = Snapshot.reconnect(7)
    now = connected.clock.now()
    streams = connected.services.streams
    first = streams.event(snap, now)
    assert streams.event(snap, now) is first
    assert first == 'id: 7\ndata: {"error":"reconnect_required"}\n\n'
    other = Streams(connected.services.runtime.hub, connected.clock)
    assert other.event(snap, now) == first


def test_no_data_yet_is_one_view() -> None:
    """No snapshot, or one without data that is not a reconnect: the same NO_DATA view."""
    assert view_of(None, 0.0) is NO_DATA
    assert view_of(Snapshot(None, Status.STALE, 1), 0.0) is NO_DATA
    assert view_of(Snapshot.reconnect(1), 0.0) is not NO_DATA
    assert NO_DATA.data() == {"error": "unavailable", "stale": True}


async def test_no_data_yet_each_route_picks_its_status(connected: Env) -> None:
    """Spotify failing before any data: /api/spotify refuses 503, the public JSON answers the
    view with 503, and both event streams send the view as an event; each with a Retry-After
    where it is a response."""
    published = await connected.client.post("/api/account/publish", headers={"Origin": ORIGIN})
    public_id = published.json()["publicId"]
    await connected.services.runtime.hub.forget("demo")
    connected.sim.faults.add("currently-playing", status=500, times=10)
    private = await connected.client.get("/api/spotify")
    assert private.status_code == 503 and private.json()["error"] == "unavailable"
    public = await connected.client.get(f"/p/{public_id}.json")
    assert public.status_code == 503 and public.json() == NO_DATA.data()
    assert int(private.headers["retry-after"]) >= 1 and int(public.headers["retry-after"]) >= 1
    for path, headers in (
        ("/api/spotify/events", _cookie(connected)),
        (f"/p/{public_id}/events", {}),
    ):
        async with SSEReader(connected.app, path, headers) as sse:
            (event,) = await sse.wait_for(1)
            assert event.data == NO_DATA.data()
