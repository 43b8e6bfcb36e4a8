"""Track-change webhooks: signed (checked with the ``standardwebhooks`` package), retried, once
per change, never in the viewers' way, never sent where they may not go."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks
from harness.app import ORIGIN, Env, open_env
from harness.live_server import free_port

from nowplaying.clock import FakeClock
from nowplaying.engine.snapshot import Snapshot, Status
from nowplaying.models import Item, Kind, NowPlaying
from nowplaying.ops.webhooks import Refused, Webhooks, event_of, resolve
from nowplaying.store import Webhook

pytestmark = pytest.mark.anyio
SAME = {"Origin": ORIGIN}


@dataclass
class Receiver:
    """A loopback HTTP server that records each POST and answers from ``statuses``."""

    url: str
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, seconds: float = 10.0) -> list[tuple[dict[str, str], bytes]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.got) >= count, timeout=seconds)
            return list(self.got)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    rec = Receiver(f"http://127.0.0.1:{port}/hook")
    rec.hold.set()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            rec.hold.wait(10)
            status = rec.statuses.pop(0) if rec.statuses else 204
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()
            with rec.arrived:
                rec.got.append((dict(self.headers.items()), body))
                rec.arrived.notify_all()

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    rec.hold.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
async def hooked(tmp_path: Path) -> AsyncIterator[Env]:
    """A connected app whose clock starts now (signatures carry real timestamps, which the
    receiver's library checks), allowed to send to loopback."""
    clock = FakeClock(start=float(int(time.time())))
    async with open_env(tmp_path, clock, nowplaying_webhook_allowed_hosts=["127.0.0.1"]) as env:
        response = await env.connect()
        assert response.status_code == 303
        yield env


async def add(env: Env, url: str) -> httpx.Response:
    return await env.client.post("/api/account/webhooks", json={"url": url}, headers=SAME)


async def settle(env: Env, seconds: float = 3.0) -> None:
    """Let the poller see the player's new state (polls are due within a second or two)."""
    await env.clock.advance(seconds, step=0.5)


async def arrived(receiver: Receiver, count: int) -> list[tuple[dict[str, str], bytes]]:
    got = await asyncio.to_thread(receiver.wait_for, count)
    assert len(got) >= count, f"{len(got)} of {count} deliveries arrived"
    return got


async def test_each_change_is_a_signed_event(hooked: Env, receiver: Receiver) -> None:
    player = hooked.sim.player("demo")
    player.play(1, progress_ms=3000)
    created = await add(hooked, receiver.url)
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    await settle(hooked)  # the first state: no event, it is where the webhook starts
    steps = [
        (player.skip, "track.started"),
        (player.pause, "playback.paused"),
        (player.resume, "playback.resumed"),
        (player.stop, "playback.stopped"),
    ]
    verifier = standardwebhooks.Webhook(secret)
    for n, (act, expected) in enumerate(steps, 1):
        act()
        await settle(hooked)
        headers, body = (await arrived(receiver, n))[n - 1]
        payload = verifier.verify(body, headers)
        assert payload["type"] == expected, payload
        assert payload["timestamp"].endswith("Z")
    started = json.loads(receiver.got[0][1])["data"]
    assert started["isPlaying"] is True and started["title"]
    assert json.loads(receiver.got[-1][1])["data"]["isPlaying"] is False
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(receiver.got[0][1] + b" ", receiver.got[0][0])
    listed = (await hooked.client.get("/api/account/webhooks")).json()["webhooks"]
    assert [d["event"] for d in listed[0]["deliveries"]][::-1] == [e for _, e in steps]
    assert {d["status"] for d in listed[0]["deliveries"]} == {"delivered"}
    assert "secret" not in listed[0]


async def test_a_503_is_retried_with_backoff(hooked: Env, receiver: Receiver) -> None:
    receiver.statuses = [503, 503]
    player = hooked.sim.player("demo")
    player.play(1, progress_ms=3000)
    created = (await add(hooked, receiver.url)).json()
    await settle(hooked)
    hooks = hooked.services.webhooks
    assert hooks is not None
    player.skip()
    await settle(hooked)
    await arrived(receiver, 1)
    await hooks.idle()  # the answer handled: the retry is scheduled
    await hooked.clock.advance(5, step=1)  # the first retry, 5 s later
    await arrived(receiver, 2)
    await hooks.idle()
    await hooked.clock.advance(30, step=5)  # the second, 30 s after that
    got = await arrived(receiver, 3)
    ids = {headers["webhook-id"] for headers, _ in got}
    assert len(ids) == 1  # the same message each time: a receiver can tell a retry
    await hooks.idle()
    [info] = (await hooked.client.get("/api/account/webhooks")).json()["webhooks"]
    assert info["id"] == created["id"]
    [delivery] = info["deliveries"]
    assert (delivery["status"], delivery["attempts"], delivery["detail"]) == (
        "delivered",
        3,
        "HTTP 204",
    )
    assert hooks.counts["retried"] == 2 and hooks.counts["delivered"] == 1


async def test_a_slow_receiver_never_delays_viewers(hooked: Env, receiver: Receiver) -> None:
    """While the receiver holds the first delivery, the next change reaches the public JSON."""
    player = hooked.sim.player("demo")
    player.play(1, progress_ms=3000)
    await add(hooked, receiver.url)
    published = await hooked.client.post("/api/account/publish", headers=SAME)
    public_id = published.json()["publicId"]
    await settle(hooked)
    receiver.hold.clear()
    player.skip()
    await settle(hooked)
    player.skip()
    await settle(hooked)
    now = (await hooked.client.get(f"/p/{public_id}.json")).json()
    assert now["title"] == player.state().item["name"]  # type: ignore[index]
    assert receiver.got == []  # still held
    receiver.hold.set()
    assert len(await arrived(receiver, 2)) == 2


async def test_one_delivery_per_change_across_instances(hooked: Env, receiver: Receiver) -> None:
    """Two instances see the same change (the same state version, shared through Redis in a
    cluster): the store's claim lets one send it."""
    hooks = hooked.services.webhooks
    assert hooks is not None
    created = (await add(hooked, receiver.url)).json()
    other = Webhooks(
        hooked.services.runtime.hub,
        hooked.services.runtime.store,
        hooked.clock,
        allowed_hosts=["127.0.0.1"],
    )
    await other.start()
    try:
        snap = Snapshot(playing(), Status.LIVE, 42)
        hooks.emit("demo", "track.started", snap)
        other.emit("demo", "track.started", snap)
        await hooks.idle()
        await other.idle()
        assert len(await arrived(receiver, 1)) == 1
        assert hooks.counts["claimed"] + other.counts["claimed"] == 1
        assert hooks.counts["lost"] + other.counts["lost"] == 1
        assert created["id"]
    finally:
        await other.close()


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/hook",
        "https://[::1]/hook",
        "http://hooks.test/plain",
        "https://user:pass@hooks.test/",
        "ftp://hooks.test/",
        "not a url",
    ],
)
async def test_a_url_that_may_not_be_used_is_refused_at_once(connected: Env, url: str) -> None:
    response = await add(connected, url)
    assert response.status_code == 400
    assert response.json()["message"]
    assert (await connected.client.get("/api/account/webhooks")).json()["webhooks"] == []


async def test_a_name_resolving_to_a_private_address_gets_no_traffic(connected: Env) -> None:
    """Checked after DNS, before every delivery: nothing is sent, the owner sees why."""
    hooks = connected.services.webhooks
    assert hooks is not None
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    hooks.http = httpx.AsyncClient(transport=httpx.MockTransport(record))

    async def lookup(host: str, port: int) -> list[str]:
        return {"metadata.test": ["169.254.169.254"], "lan.test": ["93.184.216.34", "10.0.0.1"]}[
            host
        ]

    hooks.lookup = lookup
    for url in ("https://metadata.test/x", "https://lan.test/y"):
        assert (await add(connected, url)).status_code == 201
    listed = (await connected.client.get("/api/account/webhooks")).json()["webhooks"]
    for info in listed:
        assert (
            await connected.client.post(f"/api/account/webhooks/{info['id']}/test", headers=SAME)
        ).status_code == 202
    await hooks.idle()
    assert sent == []
    listed = (await connected.client.get("/api/account/webhooks")).json()["webhooks"]
    for info in listed:
        [delivery] = info["deliveries"]
        assert delivery["status"] == "refused" and "private" in delivery["detail"]
    await hooks.http.aclose()


async def test_owners_manage_up_to_five(connected: Env) -> None:
    ids = []
    for n in range(5):
        created = await add(connected, f"https://hooks.test/{n}")
        assert created.status_code == 201
        ids.append(created.json()["id"])
    sixth = await add(connected, "https://hooks.test/6")
    assert sixth.status_code == 400 and "5" in sixth.json()["message"]
    cross = await connected.client.post(
        "/api/account/webhooks",
        json={"url": "https://hooks.test/x"},
        headers={"Origin": "https://evil.test"},
    )
    assert cross.status_code == 403
    gone = await connected.client.delete(f"/api/account/webhooks/{ids[0]}", headers=SAME)
    assert gone.status_code == 204
    again = await connected.client.delete(f"/api/account/webhooks/{ids[0]}", headers=SAME)
    assert again.status_code == 404
    listed = (await connected.client.get("/api/account/webhooks")).json()["webhooks"]
    assert sorted(h["id"] for h in listed) == sorted(ids[1:])
    bad = await connected.client.post("/api/account/webhooks", content=b"{", headers=SAME)
    assert bad.status_code == 400


async def test_resolve_refuses_every_private_kind() -> None:
    private = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "::1"]
    private += ["fe80::1", "fc00::1", "::ffff:10.0.0.1", "0.0.0.0", "224.0.0.1"]  # noqa: S104
    for address in private:  # literal addresses: nothing is looked up, nothing is sent
        with pytest.raises(Refused):
            await resolve(address, 443, frozenset())
    assert await resolve("127.0.0.1", 80, frozenset({"127.0.0.1"})) == "127.0.0.1"
    assert await resolve("93.184.216.34", 443, frozenset()) == "93.184.216.34"


def playing(title: str = "One", *, is_playing: bool = True) -> NowPlaying:
    item = Item(
        Kind.TRACK,
        title,
        ("A",),
        "Al",
        None,
        f"https://open.spotify.com/track/{title}",
        200_000,
        title,
    )
    return NowPlaying(
        is_playing=is_playing, kind=Kind.TRACK, item=item, progress_ms=1000, timestamp=1.0
    )


def test_events_from_changes() -> None:
    def snap(p: NowPlaying | None) -> Snapshot:
        return Snapshot(p, Status.LIVE, 1)

    assert event_of(snap(None), snap(playing())) == "track.started"
    assert event_of(snap(playing()), snap(playing("Two"))) == "track.started"
    assert event_of(snap(playing()), snap(playing(is_playing=False))) == "playback.paused"
    assert event_of(snap(playing(is_playing=False)), snap(playing())) == "playback.resumed"
    assert event_of(snap(playing()), snap(NowPlaying(is_playing=False))) == "playback.stopped"
    assert event_of(snap(playing()), snap(playing())) is None  # progress only
    assert event_of(snap(None), snap(NowPlaying(is_playing=False))) is None


def test_webhook_repr_hides_the_secret() -> None:
    assert "whsec_" not in repr(Webhook("w", "a", "https://h.test/", "whsec_c2VjcmV0", 1.0))
