"""The Redis coordinator against the real Redis on this machine, and a throwaway redis-server
for outage and recovery."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from harness.app import Env
from harness.engine import OneTrack
from harness.helpers import reads_of
from harness.live_server import free_port
from harness.services import POSTGRES_URL, postgres_schema, require
from harness.stores import STORE_KEY
from redis.exceptions import RedisError

from nowplaying.clock import FakeClock
from nowplaying.coord.base import CoordinationError
from nowplaying.coord.keys import Keys
from nowplaying.coord.redis import RedisCoordinator
from nowplaying.crypto import TokenCipher
from nowplaying.engine.fanout import Subscription
from nowplaying.engine.live import LiveHub, Snapshot, Status
from nowplaying.engine.schedule import Schedule
from nowplaying.models import Item, Kind, NowPlaying, PlayedItem, SourceKind
from nowplaying.runtime import database_lock
from nowplaying.sources.push import Event, Push, pushed
from nowplaying.sources.spotify.grants import RefreshDeferred, TokenManager
from nowplaying.store import PostgresStore

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def coordinators(
    url: str, n: int, *, clock: FakeClock | None = None, **kw: Any
) -> AsyncIterator[list[RedisCoordinator]]:
    coords = [RedisCoordinator(url, clock=clock, **kw) for _ in range(n)]
    inboxes: list[list[tuple[str, str]]] = [[] for _ in coords]
    for c, inbox in zip(coords, inboxes, strict=True):
        await c.start(lambda a, p, box=inbox: box.append((a, p)))  # type: ignore[misc]
        c.inbox = inbox  # type: ignore[attr-defined]
    try:
        for c in coords:  # subscribed, so a publish from now on reaches every one of them
            await asyncio.wait_for(c.listening.wait(), 5)
        yield coords
    finally:
        for c in coords:
            await c.close()


async def test_one_lease_holder_until_it_lapses(flushed: str) -> None:
    """Only one instance holds an account's lease; another takes it once it lapses."""
    async with coordinators(flushed, 2, lease_ttl=0.4) as (a, b):
        assert await a.hold_lease("acc")
        assert not await b.hold_lease("acc")
        assert await a.hold_lease("acc")  # renewal
        # a stops renewing (it "died"): b gets the lease once Redis lets a's lapse
        await _until(lambda: b.hold_lease("acc"))
        assert not await a.hold_lease("acc")
        await b.release_lease("acc")
        assert await a.hold_lease("acc")


async def test_state_reaches_other_instances(flushed: str) -> None:
    """A publish is stored as the latest state and delivered to the other instance only."""
    async with coordinators(flushed, 2) as (a, b):
        await a.publish("acc", "payload-1")
        await _until(lambda: _got(b))
        assert b.inbox == [("acc", "payload-1")]  # type: ignore[attr-defined]
        assert a.inbox == []  # type: ignore[attr-defined]
        assert await b.latest("acc") == "payload-1"


async def test_watch_marks_are_shared(flushed: str) -> None:
    """A watch mark by one instance is seen by the other."""
    async with coordinators(flushed, 2) as (a, b):
        assert not await b.is_watched("acc")
        await a.mark_watched("acc")
        assert await b.is_watched("acc")


async def test_pause_is_app_wide(flushed: str) -> None:
    """A rate-limit pause set by one instance holds for all."""
    async with coordinators(flushed, 2) as (a, b):
        until = time.time() + 60
        await a.set_pause(until)
        assert await b.paused_until() == pytest.approx(until)
        await b.set_pause(until - 30)  # an earlier pause never shortens it
        assert await a.paused_until() == pytest.approx(until)


async def test_pause_reason_is_shared_with_the_longest_pause(flushed: str) -> None:
    """The quota's reason travels with its pause; a shorter window pause does not replace it."""
    async with coordinators(flushed, 2) as (a, b):
        until = time.time() + 3600
        await a.set_pause(until, "QUOTA_EXCEEDED")
        assert await b.pause_reason() == "QUOTA_EXCEEDED"
        await b.set_pause(until - 3000, "rate_limit")
        assert await a.pause_reason() == "QUOTA_EXCEEDED"
        assert await a.paused_until() == pytest.approx(until)


async def test_pause_ttl_comes_from_the_injected_clock(flushed: str) -> None:
    """A pause's Redis TTL is ``until`` minus the coordinator's clock, not the wall clock: a clock
    a month behind real time still stores a 60 s pause for 60 s."""
    clock = FakeClock(start=time.time() - 30 * 86400)
    raw = aioredis.Redis.from_url(flushed)
    try:
        async with coordinators(flushed, 2, clock=clock) as (a, b):
            until = clock.now() + 60
            await a.set_pause(until, "rate_limit")
            assert 50_000 < await raw.pttl("np:pause") <= 60_000
            assert 50_000 < await raw.pttl("np:pause:reason") <= 60_000
            assert await b.paused_until() == pytest.approx(until)
    finally:
        await raw.aclose()


async def test_lock_excludes_across_instances(flushed: str) -> None:
    """Two instances never hold the same lock at once."""
    inside = 0
    most = 0
    done = 0

    async def work(c: RedisCoordinator) -> None:
        nonlocal inside, most, done
        async with c.lock("refresh:acc"):
            inside += 1
            most = max(most, inside)
            await c.is_watched("acc")  # a Redis round trip while held: the others try meanwhile
            inside -= 1
            done += 1

    async with coordinators(flushed, 2) as (a, b):
        await asyncio.gather(*(work(random.choice([a, b])) for _ in range(10)))
    assert most == 1
    assert done == 10


async def test_lock_held_elsewhere_raises_and_never_runs_the_body(flushed: str) -> None:
    """Another instance holds the lock past lock_wait: CoordinationError, the body never runs."""
    ran = 0
    async with coordinators(flushed, 2, lock_wait=0.3) as (a, b):
        async with a.lock("refresh:acc"):
            with pytest.raises(CoordinationError, match="still held"):
                async with b.lock("refresh:acc"):
                    ran += 1
            assert not b.degraded  # a busy lock is not an outage
        async with b.lock("refresh:acc"):  # released by a: b gets it now
            ran += 10
    assert ran == 10


async def test_lock_taken_by_a_foreign_holder_raises(flushed: str) -> None:
    """A lock key set by any other process (not this coordinator) is honoured too."""
    raw = aioredis.Redis.from_url(flushed)
    await raw.set("np:lock:refresh:acc", "someone-else", px=60_000)
    await raw.aclose()
    async with coordinators(flushed, 1, lock_wait=0.2) as (a,):
        with pytest.raises(CoordinationError):
            async with a.lock("refresh:acc"):
                pytest.fail("the body ran without the lock")


async def test_lock_that_lapsed_inside_its_body_warns(
    flushed: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The lock's key gone before release (it outlived lock_ttl): a warning, no exception."""
    caplog.set_level(logging.WARNING)
    raw = aioredis.Redis.from_url(flushed)
    async with coordinators(flushed, 1) as (a,), a.lock("refresh:acc"):
        assert await raw.delete("np:lock:refresh:acc") == 1  # as if its TTL had passed
    await raw.aclose()
    assert any("outlived" in r.getMessage() for r in caplog.records)


async def test_shared_token(flushed: str) -> None:
    """The access token stored by one instance is read by another, until dropped."""
    async with coordinators(flushed, 2) as (a, b):
        await a.put_token("acc", "tok", ttl=60)
        assert await b.get_token("acc") == "tok"
        await b.drop_token("acc")
        assert await a.get_token("acc") is None


async def test_unreachable_redis_degrades_to_local(caplog: pytest.LogCaptureFixture) -> None:
    """No Redis: leases are held locally (per-instance polling), calls do not raise, one warning."""
    caplog.set_level(logging.WARNING)
    c = RedisCoordinator(f"redis://127.0.0.1:{free_port()}/0", retry_every=60)
    await c.start(lambda a, p: None)
    try:
        assert await c.hold_lease("acc")
        await c.publish("acc", "x")
        assert await c.latest("acc") is None
        await c.set_pause(time.time() + 5)
        assert await c.paused_until() > time.time()
        with pytest.raises(CoordinationError, match="unreachable"):
            async with c.lock("refresh:acc"):
                pytest.fail("the body ran without the lock")
        assert c.degraded
    finally:
        await c.close()
    warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(warnings) == 1


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A redis-server of our own, which the test can stop and start again."""
    binary = shutil.which("redis-server")
    if binary is None:
        require("redis://127.0.0.1:1", "redis-server (the binary)")
        pytest.skip("redis-server not installed")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    yield port, procs
    for p in procs:
        p.kill()
        p.wait()


def _start_redis(port: int, procs: list[subprocess.Popen[bytes]], tmp: Path) -> None:
    procs.append(
        subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )


async def _until(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    """Wait (real time, bounded: Redis and its TTLs are real) until ``check()`` holds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def _filled(queue: Subscription) -> bool:
    return not queue.empty()


async def _got(c: RedisCoordinator) -> bool:
    """Whether a coordinator made by ``coordinators`` has received a message."""
    return bool(c.inbox)  # type: ignore[attr-defined]


async def test_redis_outage_and_recovery(
    own_redis: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    """Redis goes away: degraded, still answering. Redis comes back: coordinating again."""
    port, procs = own_redis
    _start_redis(port, procs, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    a, b = RedisCoordinator(url, retry_every=0.1), RedisCoordinator(url, retry_every=0.1)

    async def a_holds() -> bool:  # really held: Redis up and answering, not the fallback
        return await a.hold_lease("acc") and not a.degraded

    async def b_falls_back() -> bool:  # degraded: polls for itself rather than not at all
        return await b.hold_lease("acc") and b.degraded

    def recovered(c: RedisCoordinator) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            await c.mark_watched("acc")
            return not c.degraded

        return check

    try:
        await _until(a_holds)
        await b.start(lambda x, y: None)
        assert not await b.hold_lease("acc")
        procs[0].kill()
        procs[0].wait()
        await _until(b_falls_back)
        with pytest.raises(CoordinationError):  # but no lock can be had
            async with b.lock("refresh:acc"):
                pytest.fail("the body ran without the lock")
        _start_redis(port, procs, tmp_path)
        await _until(recovered(b))
        await _until(recovered(a))
        assert await b.hold_lease("acc")  # the old lease died with the old server
        assert not await a.hold_lease("acc")
        a.lock_wait = 0.3
        async with b.lock("refresh:acc"):  # locks work again
            with pytest.raises(CoordinationError):
                async with a.lock("refresh:acc"):
                    pytest.fail("two holders at once")
    finally:
        await a.close()
        await b.close()


@pytest.fixture
async def pg_store() -> AsyncIterator[PostgresStore]:
    async for schema in postgres_schema():
        store = PostgresStore(POSTGRES_URL, cipher=TokenCipher(STORE_KEY), schema=schema)
        await store.open()
        yield store
        await store.close()


async def test_while_redis_is_down_locks_serialise_through_the_database(
    own_redis: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path, pg_store: PostgresStore
) -> None:
    """With PostgreSQL's advisory lock, an instance that cannot reach Redis still takes the
    lock, one holder at a time: beside an instance that can (Redis back for one, not yet for
    the other) and beside another that cannot. Without it, none is had (the test above)."""
    port, procs = own_redis
    _start_redis(port, procs, tmp_path)
    shared = database_lock(pg_store, wait=0.3)
    up = RedisCoordinator(f"redis://127.0.0.1:{port}/0", database_lock=shared, lock_wait=0.3)
    dead = f"redis://127.0.0.1:{free_port()}/0"
    down = [RedisCoordinator(dead, database_lock=shared, retry_every=60) for _ in range(2)]
    ran: list[str] = []
    try:
        async with down[0].lock("refresh:acc"):
            assert down[0].degraded
            ran.append("down")
            for other in (down[1], up):
                with pytest.raises(CoordinationError):
                    async with other.lock("refresh:acc"):
                        pytest.fail("two holders at once")
        async with up.lock("refresh:acc"):
            ran.append("up")
            with pytest.raises(CoordinationError):
                async with down[1].lock("refresh:acc"):
                    pytest.fail("two holders at once")
        async with down[1].lock("refresh:acc"):
            ran.append("down again")
    finally:
        for c in (up, *down):
            await c.close()
    assert ran == ["down", "up", "down again"]


async def test_while_redis_is_down_each_instance_spends_its_share(
    own_redis: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    """Two instances with viewers counted while Redis answered: once it is gone, each one's
    ledger takes half the window's calls (its calls before the outage counted in it), and
    reports its use and its accounts as if every instance had as many."""
    port, procs = own_redis
    _start_redis(port, procs, tmp_path)
    clock = FakeClock()
    url = f"redis://127.0.0.1:{port}/0"
    a, b = (RedisCoordinator(url, clock=clock, retry_every=0) for _ in range(2))

    async def both_counted() -> bool:
        await b.mark_watched("other")
        await a.mark_watched("acc")
        return a.instances == 2

    try:
        await _until(both_counted)
        ledger, now = a.ledger(), clock.now()
        assert [await ledger.try_spend(now, 30.0, 10, 1000) for _ in range(2)] == [0.0, 0.0]
        assert (await ledger.mark_active("acc", now, 30.0)).accounts == 1
        procs[0].kill()
        procs[0].wait()
        spent = [await ledger.try_spend(now, 30.0, 10, 1000) for _ in range(6)]
        assert a.degraded
        assert spent[:3] == [0.0] * 3 and all(w > 0 for w in spent[3:])
        assert await ledger.used(now, 30.0) == (10, 10)
        reading = await ledger.mark_active("acc", now, 30.0)
        assert (reading.accounts, reading.in_window, reading.today) == (2, 10, 10)
        assert reading.polled == ("acc",)  # its slot among the accounts it polls itself
    finally:
        await a.close()
        await b.close()


async def test_degraded_retries_follow_the_clock(
    own_redis: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    """Degraded, Redis is tried again only once ``retry_every`` seconds of the coordinator's clock
    have passed: with Redis back but the clock still, no call reaches it; one step on, they do."""
    port, procs = own_redis
    _start_redis(port, procs, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    raw = aioredis.Redis.from_url(url, socket_connect_timeout=1.0)

    async def redis_up() -> bool:
        try:
            return bool(await raw.ping())
        except (OSError, RedisError):
            return False

    clock = FakeClock()
    c = RedisCoordinator(url, retry_every=2.0, clock=clock)

    def degraded() -> bool:  # read afresh each time (no narrowing across the calls)
        return c.degraded

    try:
        await _until(redis_up)
        await c.mark_watched("acc")
        assert not degraded()
        procs[0].kill()
        procs[0].wait()
        await c.mark_watched("acc")
        assert degraded()
        _start_redis(port, procs, tmp_path)  # a fresh server: no keys
        await _until(redis_up)
        for _ in range(5):  # any number of calls while the clock stands still: none is tried
            await c.mark_watched("acc")
        assert degraded()
        assert await raw.exists("np:watch:acc") == 0
        await clock.advance(2.0)
        await c.mark_watched("acc")
        assert not degraded()
        assert await raw.exists("np:watch:acc") == 1
    finally:
        await c.close()
        await raw.aclose()


def test_snapshot_wire_round_trip() -> None:
    """Snapshots cross instances intact, items, last played and all."""
    item = Item(Kind.TRACK, '<t> & "q"', ("A", "B"), "Al", "https://i/x", "https://o/t", 1000, "id")
    snap = Snapshot(
        NowPlaying(True, Kind.TRACK, item, 10, 5.5),
        Status.STALE,
        7,
        retry_after=3.0,
        last_played=PlayedItem(item, 99.0),
    )
    assert Snapshot.from_wire(snap.to_wire()) == snap
    empty = Snapshot.reconnect(2)
    assert Snapshot.from_wire(empty.to_wire()) == empty


async def test_two_hubs_share_one_poller(flushed: str, clock: FakeClock) -> None:
    """Two instances with viewers of one account: one polls, both viewers see each change."""
    upstream = OneTrack(clock, "one")

    coords = [RedisCoordinator(flushed, clock=clock) for _ in range(2)]
    hubs = [
        LiveHub(reads_of(upstream.fetch), clock, schedule=Schedule(poll_seconds=5), coord=c)
        for c in coords
    ]
    for h in hubs:
        await h.start()
    try:
        for c in coords:
            await asyncio.wait_for(c.listening.wait(), 5)
        async with hubs[0].subscribe("acc") as q0:
            await clock.advance(0.1)
            async with hubs[1].subscribe("acc") as q1:
                await clock.advance(3, step=0.5)
                await _until(lambda: _filled(q1))  # pub/sub is real I/O: let it arrive
                assert q0.get_nowait().playing.item.title == "one"  # type: ignore[union-attr]
                assert q1.get_nowait().playing.item.title == "one"  # type: ignore[union-attr]
                upstream.title = "two"
                await clock.advance(5.5, step=0.5)
                await _until(lambda: _filled(q1))
                assert q1.get_nowait().playing.item.title == "two"  # type: ignore[union-attr]
                assert q0.get_nowait().playing.item.title == "two"  # type: ignore[union-attr]
        assert upstream.calls == hubs[0].counts["polls"] + hubs[1].counts["polls"]
        assert min(hubs[0].counts["polls"], hubs[1].counts["polls"]) == 0  # only one polled
    finally:
        for h in hubs:
            await h.close()


@contextlib.asynccontextmanager
async def playing_pair(flushed: str, clock: FakeClock) -> AsyncIterator[tuple[LiveHub, LiveHub]]:
    """Two hubs on real Redis, both watching ``acc`` (a track that began before any push, its
    progress moving on), once one of them polls: ``(leader, follower)``."""
    began = clock.now()

    async def playing_since_before(account_id: str) -> NowPlaying:
        it = Item(Kind.TRACK, "polled", ("a",), None, None, None, 600_000, uri="polled")
        return NowPlaying(True, Kind.TRACK, it, int((clock.now() - began) * 1000), clock.now())

    coords = [RedisCoordinator(flushed, clock=clock) for _ in range(2)]
    hubs = [
        LiveHub(reads_of(playing_since_before), clock, schedule=Schedule(poll_seconds=5), coord=c)
        for c in coords
    ]
    for h in hubs:
        await h.start()
    try:
        for c in coords:
            await asyncio.wait_for(c.listening.wait(), 5)
        async with hubs[0].subscribe("acc"):
            await clock.advance(0.1)
            async with hubs[1].subscribe("acc") as q1:
                await clock.advance(3, step=0.5)
                await _until(lambda: _filled(q1))
                yield (hubs[0], hubs[1]) if hubs[0].counts["polls"] else (hubs[1], hubs[0])
    finally:
        for h in hubs:
            await h.close()


async def _advance_till(clock: FakeClock, check: Callable[[], bool], seconds: float = 120) -> None:
    """Move the fake clock on in half seconds, with real time between steps for Redis's real
    I/O, until ``check()`` holds (within ``seconds`` of fake time)."""
    for _ in range(int(seconds * 2)):
        if check():
            return
        await clock.advance(0.5)
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def _pushed_now(clock: FakeClock) -> NowPlaying:
    item = Item(Kind.TRACK, "pushed", ("P",), None, None, None, 0)
    return NowPlaying(True, Kind.TRACK, item, None, clock.now(), SourceKind.PUSH)


async def test_a_push_to_a_following_instance_outlives_the_leaders_polls(
    flushed: str, clock: FakeClock
) -> None:
    """A player pushes to the instance that does not poll: the polling one takes the push on,
    so its next polls merge it in instead of publishing over it, on both instances."""
    async with playing_pair(flushed, clock) as (leader, follower):
        await follower.push("acc", pushed(_pushed_now(clock)))
        await _until(lambda: _shows(leader, "pushed"))
        polls = leader.counts["polls"]
        await _advance_till(clock, lambda: leader.counts["polls"] >= polls + 2)
        for h in (leader, follower):
            await _until(lambda h=h: _shows(h, "pushed"))  # type: ignore[misc]


@pytest.mark.parametrize("pushed_to", ["leader", "follower"])
async def test_a_finished_listen_on_the_following_instance_ends_the_push_everywhere(
    flushed: str, clock: FakeClock, pushed_to: str
) -> None:
    """A playing-now pushed to either instance, then its finished listen to the one that does
    not poll: the push ends on both (the leader no longer holds it to merge into its polls;
    tests/procs/test_push_instances.py watches those polls with real processes)."""
    async with playing_pair(flushed, clock) as (leader, follower):
        playing = _pushed_now(clock)
        await (leader if pushed_to == "leader" else follower).push("acc", pushed(playing))
        for h in (leader, follower):
            await _until(lambda h=h: _shows(h, "pushed"))  # type: ignore[misc]
        done = replace(playing, is_playing=False)
        await follower.push("acc", Push(Event.LISTENED, done, clock.now()))
        await clock.advance(1, step=0.5)
        for h in (leader, follower):
            await _until(lambda h=h: _shows(h, "polled"))  # type: ignore[misc]


async def _shows(hub: LiveHub, title: str) -> bool:
    snap = hub.peek("acc")
    return bool(snap and snap.playing and snap.playing.item and snap.playing.item.title == title)


async def test_refresh_once_across_instances(connected: Env, flushed: str) -> None:
    """Two instances' token managers after expiry: one token call between them."""
    svc = connected.services
    coords = [RedisCoordinator(flushed) for _ in range(2)]
    managers = [
        TokenManager(svc.runtime.client, svc.runtime.store, connected.clock, coord=c)
        for c in coords
    ]
    await connected.clock.advance(3600)
    connected.sim.reset_calls()
    try:
        tokens = await asyncio.gather(*(m.token("demo") for m in managers for _ in range(5)))
    finally:
        for c in coords:
            await c.close()
    assert len({t.access_token for t in tokens}) == 1
    assert connected.sim.calls["token:refresh_token"] == 1


async def test_refresh_deferred_while_another_instance_holds_the_lock(
    connected: Env, flushed: str
) -> None:
    """Another instance is inside the refresh lock: no token call here, RefreshDeferred (a
    transient SpotifyUnavailable); once it is released, the refresh is made."""
    svc = connected.services
    holder, waiter = RedisCoordinator(flushed), RedisCoordinator(flushed, lock_wait=0.3)
    manager = TokenManager(svc.runtime.client, svc.runtime.store, connected.clock, coord=waiter)
    connected.sim.reset_calls()
    try:
        async with holder.lock("refresh:demo"):
            with pytest.raises(RefreshDeferred):
                await manager.token("demo")
        assert connected.sim.calls["token"] == 0
        assert manager.counts["deferred"] == 1
        await manager.token("demo")
        assert connected.sim.calls["token:refresh_token"] == 1
    finally:
        await holder.close()
        await waiter.close()


async def test_pause_set_elsewhere_reaches_followers_viewers(flushed: str) -> None:
    """A 429 seen by a third instance pauses the leader; viewers on a follower hear "stale"."""
    clock = FakeClock()  # months from real time: the pause's TTL must come from this clock
    upstream = OneTrack(clock)

    leader, follower = (
        LiveHub(
            reads_of(upstream.fetch),
            clock,
            schedule=Schedule(poll_seconds=5),
            coord=RedisCoordinator(flushed, clock=clock),
        )
        for _ in range(2)
    )
    third = RedisCoordinator(flushed, clock=clock)
    for h in (leader, follower):
        await h.start()
    try:
        async with leader.subscribe("b"), follower.subscribe("b") as queue:
            await _advance_until(clock, queue, Status.LIVE, fake_seconds=10)
            await third.set_pause(clock.now() + 60)
            before = upstream.calls
            # The leader sees the pause at its next step; when that is on the fake clock depends
            # on when its first poll ran, which real Redis I/O decides: move time until it is.
            stale = await _advance_until(clock, queue, Status.STALE, fake_seconds=20)
            assert stale.retry_after is not None and stale.retry_after > 30
            assert upstream.calls == before
    finally:
        await leader.close()
        await follower.close()
        await third.close()


async def _advance_until(
    clock: FakeClock, queue: Subscription, status: Status, *, fake_seconds: float
) -> Snapshot:
    """Move the fake clock half a second at a time until a snapshot with ``status`` arrives
    (at most ``fake_seconds`` of fake time; each step waits on real I/O, bounded)."""
    moved = 0.0
    while moved < fake_seconds:
        await clock.advance(0.5, step=0.5)
        moved += 0.5
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                while True:
                    snap = await queue.get()
                    if snap.status is status:
                        return snap
    raise AssertionError(f"no {status} snapshot within {fake_seconds} s of fake time")


async def _arrives(queue: Subscription, status: Status) -> Snapshot:
    """Wait (real time, bounded: pub/sub is real I/O) for a snapshot with ``status``."""
    async with asyncio.timeout(5):
        while True:
            snap = await queue.get()
            if snap.status is status:
                return snap


async def test_pubsub_channel_is_per_database(flushed: str) -> None:
    """Two deployments on one Redis server (different databases) do not hear each other."""
    other = flushed.rsplit("/", 1)[0] + "/14"
    async with coordinators(flushed, 2) as (a, same), coordinators(other, 1) as (elsewhere,):
        await a.publish("acc", "state")
        await _until(lambda: _got(same))
        assert same.inbox == [("acc", "state")]  # type: ignore[attr-defined]
        assert elsewhere.inbox == []  # type: ignore[attr-defined]


async def test_redis_down_hub_polls_for_itself(clock: FakeClock) -> None:
    """Redis unreachable from the start: the hub still polls and fans out, locally."""
    upstream = OneTrack(clock)

    coord = RedisCoordinator(f"redis://127.0.0.1:{free_port()}/0", retry_every=60)
    hub = LiveHub(reads_of(upstream.fetch), clock, schedule=Schedule(poll_seconds=5), coord=coord)
    await hub.start()
    try:
        async with hub.subscribe("acc") as queue:
            await clock.advance(11, step=1)
            assert queue.get_nowait().playing is not None
        assert upstream.calls >= 2
        assert coord.degraded
    finally:
        await hub.close()


async def _title(clock: FakeClock, queue: Subscription, title: str) -> Snapshot:
    """Move time on until a snapshot playing ``title`` arrives (bounded in real time too:
    Redis is real I/O, so the poller needs real moments between fake-clock steps)."""
    async with asyncio.timeout(5):
        while True:
            while not queue.empty():
                snap = queue.get_nowait()
                if snap.playing and snap.playing.item and snap.playing.item.title == title:
                    return snap
            await clock.advance(0.25)
            await asyncio.sleep(0.01)


async def test_a_new_leader_continues_the_versions(flushed: str) -> None:
    """Instance A polls three changes and stops; fresh instance B takes over: ids go on.

    The versions are the SSE event ids that every instance, and ``Last-Event-ID``, compare: a new
    leader that started a sequence of its own (at 1, as it once did, or from a clock behind the
    last leader's) would send ids going backwards, and an id it reused would make followers and
    reconnecting viewers skip a real change as "already seen" (found by the rolling restart test).
    """
    clock = FakeClock(start=time.time())  # Redis TTLs are real time: start the fake clock at now
    upstream = OneTrack(clock, "one")

    a = LiveHub(
        reads_of(upstream.fetch),
        clock,
        schedule=Schedule(poll_seconds=1),
        coord=RedisCoordinator(flushed),
    )
    await a.start()
    try:
        async with a.subscribe("acc") as queue:
            for t in ("one", "two", "three"):
                upstream.title = t
                await _title(clock, queue, t)
            old = a.peek("acc")
    finally:
        await a.close()  # a graceful stop: the lease is released
    assert old is not None and old.version >= 3

    b = LiveHub(
        reads_of(upstream.fetch),
        clock,
        schedule=Schedule(poll_seconds=1),
        coord=RedisCoordinator(flushed),
    )
    await b.start()
    try:
        async with b.subscribe("acc") as queue:
            upstream.title = "four"
            new = await _title(clock, queue, "four")
            assert b.counts["polls"] >= 1  # B leads now
    finally:
        await b.close()
    assert new.version > old.version  # going on from the last leader's, whatever the clock


async def _drain_until(
    clock: FakeClock, queue: Subscription, seen: list[Snapshot], title: str
) -> None:
    """Move time on, keeping every snapshot that arrives, until the last one plays ``title``
    (bounded in real time: Redis is real I/O)."""

    def there() -> bool:
        item = seen[-1].playing.item if seen and seen[-1].playing else None
        return item is not None and item.title == title

    async with asyncio.timeout(10):
        while not there():
            await clock.advance(0.25)
            await asyncio.sleep(0.01)
            while not queue.empty():
                seen.append(queue.get_nowait())


async def test_a_later_id_minted_alone_is_passed_by_the_leader(
    own_redis: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    """Redis killed under two instances: each polls for itself, and B alone sees one change
    more ("interlude", under a later id than any of A's). Redis started again (empty), A leads
    and shares "two" again, under an id below B's: B keeps what it shows (its viewers hold the
    later id) and raises A's floor, and A publishes "two" again above it, so B's viewers are
    back on the leader's state before any new change, and the next change reaches both under
    ids that only grow. (Ids one more than the last: B took A's lower id and its viewers, holding
    a later one, skipped "two" and then the next change too.)"""
    port, procs = own_redis
    _start_redis(port, procs, tmp_path)
    clock = FakeClock(start=time.time())  # Redis TTLs are real time: start the fake clock at now
    upstreams = [OneTrack(clock, "one"), OneTrack(clock, "one")]
    url = f"redis://127.0.0.1:{port}/0"
    coords = [RedisCoordinator(url, clock=clock, retry_every=2) for _ in range(2)]
    hubs = [
        LiveHub(reads_of(u.fetch), clock, schedule=Schedule(poll_seconds=1), coord=c)
        for u, c in zip(upstreams, coords, strict=True)
    ]
    raw = aioredis.Redis.from_url(url)

    async def up() -> bool:
        with contextlib.suppress(RedisError):
            return bool(await raw.ping())
        return False

    await _until(up)
    for hub in hubs:
        await hub.start()
    seen: list[list[Snapshot]] = [[], []]
    try:
        async with hubs[0].subscribe("acc") as qa, hubs[1].subscribe("acc") as qb:
            queues = (qa, qb)
            for i in (0, 1):
                await _drain_until(clock, queues[i], seen[i], "one")
            procs[0].kill()
            procs[0].wait()
            for i in (0, 1):
                upstreams[i].title = "two"
                await _drain_until(clock, queues[i], seen[i], "two")
            await clock.advance(2)
            upstreams[1].title = "interlude"  # B alone, after A's last change
            await _drain_until(clock, qb, seen[1], "interlude")
            assert all(c.degraded for c in coords)
            _start_redis(port, procs, tmp_path)
            await _until(up)
            await raw.set(Keys.lease("acc"), coords[0].instance_id, px=60_000)
            await _drain_until(clock, qb, seen[1], "two")  # A's state again, no change upstream
            assert not any(c.degraded for c in coords)
            for u in upstreams:
                u.title = "three"
            for i in (0, 1):
                await _drain_until(clock, queues[i], seen[i], "three")
            assert hubs[0].polling("acc") and not await coords[1].hold_lease("acc")
            assert hubs[0].peek("acc") == hubs[1].peek("acc")
    finally:
        await raw.aclose()
        for hub in hubs:
            await hub.close()
    titles = [
        [s.playing.item.title for s in snaps if s.playing and s.playing.item] for snaps in seen
    ]
    assert titles[1][-3:] == ["interlude", "two", "three"]
    for snaps in seen:
        versions = [s.version for s in snaps]
        assert versions == sorted(set(versions))  # every one above the one before
