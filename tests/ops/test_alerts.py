"""Owner alerts against a real loopback receiver: the events, once each (also across
instances, through Redis), retried with backoff when the receiver is down, failing or slow,
never blocking the engine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness.accounts import account
from harness.app import SECRET_KEY, Env, open_env
from harness.live_server import free_port, serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nowplaying.clock import FakeClock
from nowplaying.coord.link import RedisLink
from nowplaying.crypto import TokenCipher
from nowplaying.ops.alerts import (
    DAY,
    GRANT_LIFETIME,
    Alerter,
    LocalClaims,
    RedisClaims,
    expiry_alert,
    reconnect_alert,
)
from nowplaying.sources.base import RateLimited, Withdrawn
from nowplaying.store import AccountStatus, SQLiteStore

pytestmark = pytest.mark.anyio
HOOK_PATH = "/hooks/T000/very-secret-path"


@dataclass
class Receiver:
    """A webhook receiver on loopback: records bodies, fails or holds requests on demand."""

    port: int = field(default_factory=free_port)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    fail_with: list[int] = field(default_factory=list)
    """Statuses to answer, one per request, before answering 204 again."""
    hold: int = 0
    """How many requests to hold until :attr:`released` is set (a slow receiver)."""
    released: threading.Event = field(default_factory=threading.Event)
    attempts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{HOOK_PATH}"

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.attempts += 1
            if self.hold > 0:
                self.hold -= 1
                await asyncio.to_thread(self.released.wait, 30)
                return Response(status_code=204)
            if self.fail_with:
                status = self.fail_with.pop(0)
                return JSONResponse({"error": "no"}, status, headers={"Retry-After": "3"})
            self.bodies.append(json.loads(await request.body()))
            return Response(status_code=204)

        return Starlette(routes=[Route(HOOK_PATH, hook, methods=["POST"])])

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        with serve(self.app(), self.port):
            try:
                yield
            finally:
                self.released.set()  # before the server stops: it waits for held requests


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    with r.running():
        yield r


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "db.sqlite3"), cipher=TokenCipher(SECRET_KEY))
    await s.open()
    yield s
    await s.close()


@contextlib.asynccontextmanager
async def alerter(
    url: str, store: SQLiteStore, clock: FakeClock, **kw: Any
) -> AsyncIterator[Alerter]:
    claims = kw.pop("claims", None) or LocalClaims(clock)
    a = Alerter(
        url,
        store=store,
        clock=clock,
        claims=claims,
        owner_url="https://np.test/",
        backoff=1.0,
        backoff_max=4.0,
        timeout=httpx.Timeout(kw.pop("timeout", 10.0)),
        **kw,
    )
    await a.start()
    try:
        yield a
    finally:
        await a.close()


async def scanned(a: Alerter, times: int) -> None:
    """Until the background scan has run ``times`` times (it reads the store off the loop)."""
    deadline = time.monotonic() + 30
    while a.counts["scans"] < times:
        assert time.monotonic() < deadline, f"the scan did not run: {a.counts}"
        await asyncio.sleep(0.01)


async def settle(a: Alerter, clock: FakeClock) -> None:
    """Until nothing is queued or in flight: fake time moves for the backoff sleeps, real time
    for the loopback HTTP in between (bounded, so a hang fails instead of blocking)."""
    deadline = time.monotonic() + 30
    while not a.idle.is_set():
        assert time.monotonic() < deadline, f"alerts never settled: {a.counts}"
        await clock.advance(5)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(a.idle.wait(), 0.05)


# -- the body ----------------------------------------------------------------------------------


def test_body_suits_discord_slack_and_ntfy_and_escapes_the_display_name() -> None:
    hostile = account("ana", display_name="<!channel> @everyone\nforged & more", consented_at=0)
    body = reconnect_alert(hostile, "https://np.test/").body()
    assert body["content"] == body["text"] == body["message"]
    assert body["title"] and body["event"] == "reconnect_needed"
    assert body["allowed_mentions"] == {"parse": []}, "Discord pings nobody"
    text = body["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text and "&amp; more" in text
    assert "\n" not in text
    assert body["displayName"] == hostile.display_name, "structured fields stay intact"
    assert body["account"] == "ana" and body["url"] == "https://np.test/"


# -- the events, once each -----------------------------------------------------------------------


async def test_grant_expiry_is_told_14_then_3_days_before_once_each(
    receiver: Receiver, store: SQLiteStore, clock: FakeClock
) -> None:
    now = clock.now()
    await store.put_account(account("ana", consented_at=now - GRANT_LIFETIME + 20 * DAY))
    # A widget made with Last.fm, as old: no Spotify grant, nothing expires.
    await store.put_account(
        account("lastfm:bo", "", consented_at=now - GRANT_LIFETIME + 20 * DAY, spotify=False)
    )
    async with alerter(receiver.url, store, clock, scan_every=100 * DAY) as a:
        await scanned(a, 1)
        await settle(a, clock)
        assert receiver.bodies == [], "20 days left: nothing yet"
        await clock.advance(6 * DAY + 1)  # 14 days left
        await a.scan()
        await settle(a, clock)
        assert [(b["account"], b["daysLeft"]) for b in receiver.bodies] == [("ana", 14)]
        await a.scan()
        await a.scan()
        await settle(a, clock)
        assert len(receiver.bodies) == 1, "once per event"
        await clock.advance(11 * DAY)  # 3 days left
        await a.scan()
        await settle(a, clock)
        assert [b["daysLeft"] for b in receiver.bodies] == [14, 3]
        assert receiver.bodies[1]["event"] == "grant_expires_soon"
        assert "cannot be extended" in receiver.bodies[1]["text"]


async def test_the_scan_runs_at_start_and_then_every_scan_every_on_the_clock(
    store: SQLiteStore, clock: FakeClock
) -> None:
    async with alerter("http://127.0.0.1:9/", store, clock, scan_every=3600) as a:
        await scanned(a, 1)
        await clock.advance(3599)
        assert a.counts["scans"] == 1
        await clock.advance(1)
        await scanned(a, 2)


async def test_an_unwatched_account_needing_reconnect_is_told_by_the_scan(
    receiver: Receiver, store: SQLiteStore, clock: FakeClock
) -> None:
    await store.put_account(account("ana", consented_at=clock.now()))
    await store.set_status("ana", AccountStatus.RECONNECT_REQUIRED)
    async with alerter(receiver.url, store, clock) as a:
        await scanned(a, 1)
        await settle(a, clock)
        await a.scan()
        await settle(a, clock)
    assert [b["event"] for b in receiver.bodies] == ["reconnect_needed"]


async def test_a_revoked_grant_met_by_the_poller_alerts_once(
    tmp_path: Path, clock: FakeClock, receiver: Receiver
) -> None:
    """The engine's poll meets the lost grant: one alert, however often it is polled."""
    async with open_env(tmp_path, clock, nowplaying_alert_webhook=receiver.url) as env:
        assert (await env.connect()).status_code == 303
        env.sim.accounts.revoke("demo")
        env.sim.accounts.expire_access_tokens()
        await env.services.runtime.tokens.drop("demo")
        for _ in range(3):
            await env.services.runtime.hub.forget("demo")
            await env.client.get("/api/spotify")
        runtime_alerts = _alerter(env)
        await settle(runtime_alerts, clock)
    assert [b["event"] for b in receiver.bodies] == ["reconnect_needed"]
    assert receiver.bodies[0]["account"] == "demo"
    assert receiver.bodies[0]["url"] == "https://np.test/"


async def test_a_pause_of_hours_alerts_and_a_short_one_does_not(
    tmp_path: Path, clock: FakeClock, receiver: Receiver
) -> None:
    async with open_env(tmp_path, clock, nowplaying_alert_webhook=receiver.url) as env:
        assert (await env.connect()).status_code == 303
        env.sim.faults.add("currently-playing", status=429, retry_after=30)
        await env.services.runtime.hub.forget("demo")
        await env.client.get("/api/spotify")
        await settle(_alerter(env), clock)
        assert receiver.bodies == [], "a 30 s window needs no words"
        await clock.advance(31)
        env.sim.faults.add(
            "currently-playing", status=429, retry_after=5 * 3600, reason="QUOTA_EXCEEDED"
        )
        await env.services.runtime.hub.forget("demo")
        await env.client.get("/api/spotify")
        await settle(_alerter(env), clock)
    [body] = receiver.bodies
    assert body["event"] == "app_paused" and body["reason"] == "QUOTA_EXCEEDED"


async def test_a_quota_met_looking_up_the_last_played_track_alerts_too(
    tmp_path: Path, clock: FakeClock, receiver: Receiver
) -> None:
    """The quota can be met by the last-played look-up as well as by a poll: the owner is told
    either way, and polling pauses."""
    async with open_env(tmp_path, clock, nowplaying_alert_webhook=receiver.url) as env:
        assert (await env.connect(login_path="/login?with=recently-played")).status_code == 303
        await env.services.runtime.store.set_show_last_played("demo", True)
        env.sim.player("demo").stop()
        env.sim.faults.add(
            "recently-played", status=429, retry_after=5 * 3600, reason="QUOTA_EXCEEDED"
        )
        await env.services.runtime.hub.forget("demo")
        await env.client.get("/api/spotify")
        await settle(_alerter(env), clock)
        assert env.sim.calls["recently-played"] == 1
        assert env.services.runtime.hub.pause is not None
    [body] = receiver.bodies
    assert body["event"] == "app_paused" and body["reason"] == "QUOTA_EXCEEDED"


async def test_an_endpoint_removed_for_the_app_is_shown_to_the_owner_and_alerted_once(
    tmp_path: Path, clock: FakeClock, receiver: Receiver
) -> None:
    """Spotify's third 429 (recently-played removed for development-mode apps): once it is
    told apart, the owner page and /api/account say what is disabled, and one alert is sent
    however often the disabled endpoint is asked for."""
    async with open_env(tmp_path, clock, nowplaying_alert_webhook=receiver.url) as env:
        assert (await env.connect(login_path="/login?with=recently-played")).status_code == 303
        env.sim.limits.removed = frozenset({"recently-played"})
        reads = env.services.runtime.hub.reads
        await reads.now("demo")
        with pytest.raises(RateLimited):  # the first is told from the window's by the next
            await reads.recently_played("demo", 1)
        assert "data-np-removed" not in (await env.client.get("/")).text
        await clock.advance(31)
        await reads.now("demo")
        for _ in range(3):
            with pytest.raises(Withdrawn):
                await reads.recently_played("demo", 1)
        page = (await env.client.get("/")).text
        account = (await env.client.get("/api/account")).json()
        await settle(_alerter(env), clock)
    assert 'data-np-removed="recently-played"' in page
    assert "recently-played card are not shown" in page
    [removal] = account["spotifyRemoved"]
    assert removal["endpoint"] == "recently-played"
    assert "not shown" in removal["disabled"] and "extended quota" in removal["message"]
    [body] = receiver.bodies
    assert body["event"] == "read_withdrawn" and body["endpoint"] == "recently-played"
    assert env.sim.limits.counts["removed_429"] == 2


def _alerter(env: Env) -> Alerter:
    found = env.services.runtime.alerts
    assert found is not None
    return found


async def test_two_instances_send_one_alert_through_redis(
    flushed: str, receiver: Receiver, store: SQLiteStore, clock: FakeClock
) -> None:
    alert = expiry_alert(account("ana", consented_at=clock.now()), 14, "https://np.test/")
    redis_one, redis_two = RedisLink(flushed, clock=clock), RedisLink(flushed, clock=clock)
    async with (
        alerter(receiver.url, store, clock, claims=RedisClaims(redis_one, clock)) as one,
        alerter(receiver.url, store, clock, claims=RedisClaims(redis_two, clock)) as two,
    ):
        one.notify(alert)
        two.notify(alert)
        await settle(one, clock)
        await settle(two, clock)
        assert one.counts["sent"] + two.counts["sent"] == 1
        assert one.counts["duplicate"] + two.counts["duplicate"] == 1
    await redis_one.close()
    await redis_two.close()
    assert len(receiver.bodies) == 1


async def test_sent_alerts_are_remembered_across_a_restart_without_redis(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "db.sqlite3.alerts.json"
    assert await LocalClaims(clock, path).claim("k", 100)
    assert not await LocalClaims(clock, path).claim("k", 100), "a restart keeps the claim"
    await clock.advance(101)
    assert await LocalClaims(clock, path).claim("k", 100), "until its TTL passes"


# -- delivery: down, failing, slow, refused, full ------------------------------------------------


async def test_a_receiver_that_is_down_gets_the_alert_once_it_is_up(
    store: SQLiteStore, clock: FakeClock
) -> None:
    down = Receiver()
    alert = expiry_alert(account("ana", consented_at=clock.now()), 3, "https://np.test/")
    async with alerter(down.url, store, clock) as a:
        a.notify(alert)
        while a.counts["retries"] < 2:  # refused twice, sleeping on the clock in between
            await clock.advance(5)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(a.idle.wait(), 0.05)
        with down.running():
            await settle(a, clock)
    assert a.counts["sent"] == 1 and a.counts["failed"] == 0
    assert len(down.bodies) == 1


async def test_server_errors_are_retried_honouring_retry_after(
    receiver: Receiver, store: SQLiteStore, clock: FakeClock
) -> None:
    receiver.fail_with = [500, 429]
    started = clock.now()
    async with alerter(receiver.url, store, clock) as a:
        a.notify(expiry_alert(account("ana", consented_at=started), 3, "https://np.test/"))
        await settle(a, clock)
    assert receiver.attempts == 3 and len(receiver.bodies) == 1
    assert a.counts["retries"] == 2
    assert clock.now() - started >= 3, "the 429's Retry-After (3 s) was waited, on the clock"


async def test_a_slow_receiver_times_out_and_is_retried_while_notify_never_waits(
    receiver: Receiver, store: SQLiteStore, clock: FakeClock
) -> None:
    receiver.hold = 1
    alert = expiry_alert(account("ana", consented_at=clock.now()), 3, "https://np.test/")
    async with alerter(receiver.url, store, clock, timeout=0.3) as a:
        a.notify(alert)
        for n in range(20):  # the engine's side: queueing returns at once, whatever hangs
            a.notify(expiry_alert(account(f"u{n}", consented_at=clock.now()), 3, "x"))
        assert a.counts["queued"] == 21
        await settle(a, clock)
    assert a.counts["retries"] >= 1, "the held request timed out and was sent again"
    assert a.counts["sent"] == 21


async def test_a_refusal_is_final_and_releases_the_event(
    receiver: Receiver, store: SQLiteStore, clock: FakeClock
) -> None:
    receiver.fail_with = [404]
    alert = expiry_alert(account("ana", consented_at=clock.now()), 3, "https://np.test/")
    async with alerter(receiver.url, store, clock) as a:
        a.notify(alert)
        await settle(a, clock)
        assert receiver.attempts == 1 and a.counts["failed"] == 1, "a 404 is not retried"
        a.notify(alert)
        await settle(a, clock)
    assert len(receiver.bodies) == 1, "the next occurrence tried again"


async def test_a_full_queue_drops_instead_of_blocking(store: SQLiteStore, clock: FakeClock) -> None:
    a = Alerter(
        "http://127.0.0.1:9/",
        store=store,
        clock=clock,
        claims=LocalClaims(clock),
        owner_url="x",
        queue_size=2,
    )
    for n in range(5):
        a.notify(expiry_alert(account(f"u{n}", consented_at=0), 3, "x"))
    assert (a.counts["queued"], a.counts["dropped"]) == (2, 3)
    await a.close()


async def test_the_webhook_url_is_never_logged(
    store: SQLiteStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    down = Receiver()
    caplog.set_level(logging.DEBUG)
    async with alerter(down.url, store, clock, attempts=2) as a:
        a.notify(expiry_alert(account("ana", consented_at=clock.now()), 3, "x"))
        await settle(a, clock)
    assert a.counts["failed"] == 1
    assert "undelivered" in caplog.text
    assert "very-secret-path" not in caplog.text
