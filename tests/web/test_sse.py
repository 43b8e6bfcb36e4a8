"""web/sse.py: the app's Streams own their counts, the drain and the framing; "no data yet" is one
view every route answers with its own status."""

from __future__ import annotations

import asyncio
import random
from typing import cast

import pytest
from harness.app import ORIGIN, Env
from harness.sse import SSEReader

from nowplaying.engine.snapshot import NO_DATA, Snapshot, Status, view_of
from nowplaying.web.sse import Streams, _Group, _Viewer, has_version

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


async def test_sse_reconnect_hint_comes_from_the_injected_rng(connected: Env) -> None:
    """The hint is drawn uniformly from 500-3000 ms by the given rng: spread, reproducible."""
    streams = connected.services.streams
    await connected.services.runtime.hub.forget("demo")
    stream = streams.stream("demo", rng=random.Random(7))
    assert (await anext(stream)).startswith("retry: 3000\n")
    assert (await anext(stream)).startswith("id: ")
    streams.drain()
    expected = random.Random(7).randint(500, 3000)
    assert await anext(stream) == f"retry: {expected}\n: server restarting\n\n"
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    shared = random.Random(1)
    hints = []
    for _ in range(20):
        chunks = [c async for c in streams.stream("demo", rng=shared)]
        hints.append(int(chunks[-1].split()[1]))
    assert all(500 <= h <= 3000 for h in hints)
    assert len(set(hints)) > 10


async def test_sse_sends_heartbeats_while_nothing_changes(connected: Env) -> None:
    """After 15 s (of the app's clock) without a change the stream sends a comment heartbeat."""
    connected.sim.player("demo").pause()
    await connected.services.runtime.hub.forget("demo")
    clock = connected.clock
    stream = connected.services.streams.stream("demo")
    try:
        chunks = [await anext(stream) for _ in range(2)]
        pending = asyncio.ensure_future(anext(stream))
        await clock.advance(14, step=1)
        assert not pending.done()  # no change, and not yet 15 s of silence
        await clock.advance(1.5, step=0.5)
        chunks.append(await asyncio.wait_for(pending, 5))
        pending = asyncio.ensure_future(anext(stream))
        await clock.advance(15.5, step=0.5)
        chunks.append(await asyncio.wait_for(pending, 5))
    finally:
        await stream.aclose()
    assert chunks[0].startswith("retry: ")
    assert chunks[1].startswith("id: ")
    assert chunks[2:] == [": heartbeat\n\n", ": heartbeat\n\n"]


async def test_sse_streams_share_one_encoding_and_one_heartbeat_timer(connected: Env) -> None:
    """50 streams: one change reaches them as the very same text, and their heartbeats wait on
    one shared timer of the app's clock, not one each."""
    connected.sim.player("demo").play(0)
    hub, clock = connected.services.runtime.hub, connected.clock
    await hub.forget("demo")
    streams = [connected.services.streams.stream("demo") for _ in range(50)]
    try:
        firsts = [[await anext(s) for _ in range(2)][1] for s in streams]
        assert all(f is firsts[0] for f in firsts)
        pending = [asyncio.ensure_future(anext(s)) for s in streams]
        await clock.advance(0.5)
        assert clock.sleepers <= 3  # the poller, the shared tick (and nothing per viewer)
        connected.sim.player("demo").skip()
        await clock.advance(5.5, step=0.5)
        events = await asyncio.gather(*pending)
        assert all(e is events[0] for e in events)
        assert '"title":"<Intro> & \\"Outro\\""' in events[0]
    finally:
        for s in streams:
            await s.aclose()
    assert connected.services.streams.counts["open"] == 0


async def test_waiting_sse_streams_cost_one_future_each_and_no_task(connected: Env) -> None:
    """50 waiting streams: 50 futures in the account's waiter set and in the heartbeat's, no
    task of their own; after a change every stream has it and waits again the same way."""
    hub, clock = connected.services.runtime.hub, connected.clock
    await hub.forget("demo")
    streams = [connected.services.streams.stream("demo") for _ in range(50)]
    pending: list[asyncio.Future[str]] = []
    try:
        for s in streams:
            await anext(s)  # retry:
            assert (await anext(s)).startswith("id: ")
        listing = hub._watches["demo"].listing  # the widget's sources, listed beside its poller
        if listing is not None:
            await listing
        tasks = len(asyncio.all_tasks())
        pending = [asyncio.ensure_future(anext(s)) for s in streams]
        await clock.advance(0.5)
        assert len(asyncio.all_tasks()) == tasks + 50  # the test's own, nothing per stream
        channel = hub._watches["demo"].channel
        beat = connected.services.streams._beat
        assert beat is not None
        assert len(channel.waiters) == 50
        assert len(beat.pokes) == 50
        published = hub.counts["published"]
        connected.sim.player("demo").skip()
        await clock.advance(5.5, step=0.5)
        events = await asyncio.gather(*pending)
        assert hub.counts["published"] == published + 1
        assert all(e is events[0] and e.startswith("id: ") for e in events)
        pending = [asyncio.ensure_future(anext(s)) for s in streams]
        await clock.advance(0.1)
        assert len(channel.waiters) == 50
        assert len(beat.pokes) == 50
    finally:
        for p in pending:
            p.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for s in streams:
            await s.aclose()
    assert connected.services.streams.counts["open"] == 0


class _StuckTransport:
    """A detached viewer's transport whose reader takes what ``buffered`` says it has not."""

    def __init__(self) -> None:
        self.buffered = 0
        self.aborted = False

    def is_closing(self) -> bool:
        return self.aborted

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True


async def test_a_detached_viewer_that_stops_reading_is_cut_off_at_the_write_deadline(
    connected: Env,
) -> None:
    """Bytes waiting with none taken for the write deadline: cut off and counted; a reader that
    takes some, however slowly, is not."""
    streams = connected.services.streams
    clock = connected.clock
    viewer = _Viewer(_Group(streams, "demo"), None)
    transport = _StuckTransport()
    viewer.connection_made(cast(asyncio.Transport, transport))
    transport.buffered = 100
    viewer.write(b"x")  # the kernel's buffer is full: the stall begins
    await clock.advance(streams.write_seconds - 1)
    transport.buffered = 50  # it took some: progress
    viewer.write(b"x")
    await clock.advance(streams.write_seconds - 1)
    viewer.write(b"x")
    assert not transport.aborted
    await clock.advance(2)
    viewer.write(b"x")
    assert transport.is_closing()  # aborted
    assert streams.counts["stalled"] == 1


async def test_a_detached_viewer_has_a_version_as_has_version_says(connected: Env) -> None:
    """The detached viewer reads its Last-Event-ID once; what it then has is what
    ``has_version`` says of the text, for ids level, ahead within a minute of the clock and
    past it, behind, far, huge (never parsed), and junk."""
    group = _Group(connected.services.streams, "demo")
    now = connected.clock.now()
    v = int(now * 1000)  # ids are at least the clock in ms
    arabic = "\u0661\u0660\u0660"  # digits, not ASCII ones
    sents = [None, "", "junk", "-1", arabic, "9" * 30, "1" * 5000]
    sents += [str(v + d) for d in (0, 1, 1000, 60_000, 60_001, -1)]
    has = [has_version(sent, v, now) for sent in sents]
    assert has == [False] * 7 + [True, True, True, True, False, False]
    for sent, expected in zip(sents, has, strict=True):
        assert _Viewer(group, sent).has(v, now) == expected, sent


async def _current_id(connected: Env) -> int:
    connected.sim.player("demo").play(0)
    await connected.services.runtime.hub.forget("demo")
    async with SSEReader(connected.app, "/api/spotify/events", _cookie(connected)) as first:
        seen = (await first.wait_for(1))[0]
    assert seen.id is not None
    return int(seen.id)


async def test_a_viewer_ahead_gets_only_later_changes(connected: Env) -> None:
    """Last-Event-ID a second past this instance's version (a quicker instance's, or one whose
    clock is a little ahead): not the older state, then the next change, under a later id (ids
    are at least the clock in ms)."""
    ahead = await _current_id(connected) + 1000
    headers = {**_cookie(connected), "last-event-id": str(ahead)}
    async with SSEReader(connected.app, "/api/spotify/events", headers) as again:
        await connected.clock.advance(2)
        assert again.events == []  # not the older state
        connected.sim.player("demo").skip()
        await connected.clock.advance(5.5)
        events = await again.wait_for(1)
        assert [e.data["title"] for e in events] == ['<Intro> & "Outro"']
        assert int(events[0].id or 0) > ahead


@pytest.mark.parametrize("offset", [-1, 120_000, 10**30])
async def test_ids_behind_or_far_ahead_get_the_current_state(connected: Env, offset: int) -> None:
    """An older id (an earlier release's too: one more than the last, lower than the clock), or
    one further ahead of the clock than a quicker instance's could be, gets the current state."""
    current = await _current_id(connected)
    headers = {**_cookie(connected), "last-event-id": str(current + offset)}
    async with SSEReader(connected.app, "/api/spotify/events", headers) as again:
        events = await again.wait_for(1)
        assert events[0].data["title"] == "Hoppípolla"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_stream_routes_refuse_other_methods(connected: Env, method: str) -> None:
    """The event streams answer GET (and HEAD) only: anything else is the app's 405."""
    published = await connected.client.post("/api/account/publish", headers={"Origin": ORIGIN})
    public_id = published.json()["publicId"]
    api = await connected.client.request(method, "/api/spotify/events", headers={"Origin": ORIGIN})
    assert api.status_code == 405
    assert api.json()["error"] == "method_not_allowed"
    assert api.headers["allow"] == "GET, HEAD"
    public = await connected.client.request(method, f"/p/{public_id}/events")
    assert public.status_code == 405  # the app's error page, as for every public path
    assert "text/event-stream" not in public.headers["content-type"]
