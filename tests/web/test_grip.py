"""web/grip.py: Pushpin's stream requests are answered with a hold, each change is published
once (retried, bounded), and only the accounts Pushpin holds streams of are followed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest
from harness.app import Env, make_settings
from harness.sse import SSEReader

from nowplaying.web.grip import (
    KEEP_ALIVE,
    RETRY_DELAYS,
    Grip,
    channel_of,
    last_id,
    signed,
    start_grip,
)
from nowplaying.web.sse import GREETING

pytestmark = pytest.mark.anyio

KEY = "grip-test-key-0123456789abcdef-0123456789"
PUBLISH = "http://pushpin.test/publish/"
SECOND = "http://pushpin-2.test/publish/"


def sig(key: str = KEY, *, iss: str = "pushpin", exp: float | None = None) -> str:
    return jwt.encode({"iss": iss, "exp": int(exp or time.time() + 3600)}, key, algorithm="HS256")


class Publishes:
    """Pushpin's publish endpoint, recorded; ``failing`` answers refused before one is taken."""

    def __init__(self) -> None:
        self.items: list[dict[str, object]] = []
        self.failing = 0
        self.tries = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.tries += 1
        if self.failing:
            self.failing -= 1
            return httpx.Response(503)
        self.items.extend(json.loads(request.content)["items"])
        return httpx.Response(200, text="Published\n")


def with_grip(env: Env, publishes: Callable[[httpx.Request], httpx.Response], *more: str) -> Grip:
    """``env``'s app with GRIP on, publishing to ``publishes`` (at :data:`PUBLISH` and at each
    URL of ``more``: several Pushpin instances)."""
    svc = env.services
    grip = Grip(
        svc.runtime.hub,
        env.clock,
        httpx.AsyncClient(transport=httpx.MockTransport(publishes)),
        publish_urls=(PUBLISH, *more),
        key=KEY,
        frame=svc.streams.event,
    )
    svc.grip = grip
    return grip


# -- the signature and the headers ------------------------------------------------------------


def test_only_pushpins_unexpired_signature_is_believed() -> None:
    assert signed(sig(), KEY)
    assert not signed(sig("another-key-0123456789abcdef-0123456789"), KEY)
    assert not signed(sig(exp=time.time() - 60), KEY)
    assert not signed(sig(iss="someone"), KEY)
    assert not signed(jwt.encode({"iss": "pushpin"}, KEY, algorithm="HS256"), KEY)  # no exp
    assert not signed("not.a.token", KEY)
    assert not signed(None, KEY)
    assert not signed("", KEY)


def test_grip_last_names_each_channels_last_id() -> None:
    header = 'other; last-id=3, nowplaying.abc; last-id="41" , nowplaying.x; last-id=9'
    assert last_id(header, "nowplaying.abc") == "41"
    assert last_id(header, "nowplaying.x") == "9"
    assert last_id(header, "nowplaying.none") is None
    assert last_id(None, "nowplaying.abc") is None


def test_the_settings_turn_grip_on_only_with_a_real_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NOWPLAYING_GRIP_KEY"):
        make_settings(tmp_path, nowplaying_grip_publish_url=PUBLISH, nowplaying_grip_key="changeme")
    with pytest.raises(ValueError, match="NOWPLAYING_GRIP_KEY"):
        make_settings(tmp_path, nowplaying_grip_publish_url=PUBLISH)
    settings = make_settings(tmp_path, nowplaying_grip_publish_url=PUBLISH, nowplaying_grip_key=KEY)
    assert KEY in settings.secret_values  # never logged


def test_several_pushpins_need_a_stats_socket_each(tmp_path: Path) -> None:
    two = f"{PUBLISH}, {SECOND}"
    with pytest.raises(ValueError, match="one stats socket for each of the 2 Pushpin"):
        make_settings(tmp_path, nowplaying_grip_publish_url=two, nowplaying_grip_key=KEY)
    with pytest.raises(ValueError, match="twice"):
        make_settings(
            tmp_path,
            nowplaying_grip_publish_url=f"{PUBLISH},{PUBLISH}",
            nowplaying_grip_stats_url="ipc:///a,ipc:///b",
            nowplaying_grip_key=KEY,
        )
    settings = make_settings(
        tmp_path,
        nowplaying_grip_publish_url=two,
        nowplaying_grip_stats_url="ipc:///run/a/pushpin-stats, ipc:///run/b/pushpin-stats",
        nowplaying_grip_key=KEY,
    )
    assert settings.grip_publish_urls == (PUBLISH, SECOND)
    assert settings.grip_stats_urls == ("ipc:///run/a/pushpin-stats", "ipc:///run/b/pushpin-stats")


async def test_off_by_default_and_on_with_a_publish_url(connected: Env, tmp_path: Path) -> None:
    svc = connected.services
    assert svc.grip is None
    off = make_settings(tmp_path)
    assert start_grip(off, svc.runtime.hub, connected.clock, svc.streams) is None
    on = make_settings(tmp_path, nowplaying_grip_publish_url=PUBLISH, nowplaying_grip_key=KEY)
    grip = start_grip(on, svc.runtime.hub, connected.clock, svc.streams)
    assert grip is not None
    assert grip.publish_urls == (PUBLISH,)
    await grip.close()


# -- the hold ---------------------------------------------------------------------------------


async def _current(env: Env, public_id: str) -> int:
    async with SSEReader(env.app, f"/p/{public_id}/events", {}) as direct:
        events = await direct.wait_for(1)
    return int(events[0].id or 0)


async def test_a_forwarded_request_gets_the_greeting_the_state_and_a_hold(connected: Env) -> None:
    """Pushpin's request: what a direct viewer gets first, the viewer's headers unchanged, and
    the hold on the account's channel from the version sent."""
    public_id = await connected.publish()
    current = await _current(connected, public_id)
    with_grip(connected, Publishes())
    held = await connected.client.get(f"/p/{public_id}/events", headers={"grip-sig": sig()})
    assert held.status_code == 200
    assert held.headers["grip-hold"] == "stream"
    assert held.headers["grip-channel"] == f"{channel_of('demo')}; prev-id={current}"
    assert (
        held.headers["grip-keep-alive"]
        == KEEP_ALIVE
        == ": heartbeat\\n\\n; format=cstring; timeout=15"
    )
    assert held.headers["grip-link"] == f"</p/{public_id}/events>; rel=next"
    assert held.text.startswith(GREETING)
    assert f"id: {current}\ndata: " in held.text
    async with SSEReader(connected.app, f"/p/{public_id}/events", {}) as direct:
        await direct.wait_for(1)
    same = ("content-type", "cache-control", "access-control-allow-origin", "x-accel-buffering")
    assert {h: held.headers[h] for h in same} == {h: direct.response_headers[h] for h in same}
    assert "grip-hold" not in direct.response_headers


async def test_an_unsigned_grip_request_is_served_directly(connected: Env) -> None:
    public_id = await connected.publish()
    with_grip(connected, Publishes())
    for bad in (sig("another-key-0123456789abcdef-0123456789"), "junk"):
        headers = {"grip-sig": bad, "grip-last": f"{channel_of('demo')}; last-id=1"}
        async with SSEReader(connected.app, f"/p/{public_id}/events", headers) as direct:
            events = await direct.wait_for(1)
        assert direct.status == 200
        assert "grip-hold" not in direct.response_headers
        assert events[0].data["title"] == "Hoppípolla"  # the stream itself, not a held answer


async def test_last_event_id_and_recovery_send_only_what_is_missing(connected: Env) -> None:
    public_id = await connected.publish()
    current = await _current(connected, public_id)
    with_grip(connected, Publishes())
    path = f"/p/{public_id}/events"
    has_it = await connected.client.get(
        path, headers={"grip-sig": sig(), "last-event-id": str(current)}
    )
    assert has_it.text == GREETING
    assert has_it.headers["grip-channel"].endswith(f"prev-id={current}")
    channel = channel_of("demo")
    behind = await connected.client.get(
        path, headers={"grip-sig": sig(), "grip-last": f"{channel}; last-id={current - 1}"}
    )
    assert behind.text.startswith(f"id: {current}\n")  # no greeting: the stream goes on
    level = await connected.client.get(
        path, headers={"grip-sig": sig(), "grip-last": f"{channel}; last-id={current}"}
    )
    assert level.text == ""
    assert level.headers["grip-hold"] == "stream"
    assert connected.services.grip is not None
    assert connected.services.grip.counts["held"] == 1
    assert connected.services.grip.counts["recovered"] == 2


# -- publishing -------------------------------------------------------------------------------


async def _held(env: Env, grip: Grip) -> tuple[str, int]:
    public_id = await env.publish()
    held = await env.client.get(f"/p/{public_id}/events", headers={"grip-sig": sig()})
    version = int(held.headers["grip-channel"].rsplit("=", 1)[1])
    await env.clock.advance(0.1)
    assert grip.accounts == {"demo"}
    return public_id, version


async def test_each_change_is_published_once_with_its_prev_id(connected: Env) -> None:
    publishes = Publishes()
    grip = with_grip(connected, publishes)
    _, version = await _held(connected, grip)
    await connected.clock.advance(6)
    assert publishes.items == []  # the state the stream was sent is not published again
    connected.sim.player("demo").skip()
    await connected.clock.advance(6)
    assert len(publishes.items) == 1
    item = publishes.items[0]
    assert item["channel"] == channel_of("demo")
    assert item["prev-id"] == str(version)
    content = item["formats"]["http-stream"]["content"]  # type: ignore[index]
    assert content.startswith(f"id: {item['id']}\ndata: ")
    connected.sim.player("demo").skip()
    await connected.clock.advance(6)
    assert len(publishes.items) == 2
    assert publishes.items[1]["prev-id"] == item["id"]


async def test_a_refused_publish_is_retried_then_given_up_and_named_by_the_next(
    connected: Env,
) -> None:
    publishes = Publishes()
    grip = with_grip(connected, publishes)
    await _held(connected, grip)
    publishes.failing = 2
    connected.sim.player("demo").skip()
    await connected.clock.advance(6)
    assert (publishes.tries, len(publishes.items), grip.counts["retried"]) == (3, 1, 2)
    lost_before = len(publishes.items)
    publishes.failing = 1 + len(RETRY_DELAYS)  # every try of the next change
    connected.sim.player("demo").skip()
    await connected.clock.advance(10)
    assert grip.counts["given_up"] == 1
    assert len(publishes.items) == lost_before
    lost = grip._published["demo"]
    connected.sim.player("demo").skip()
    await connected.clock.advance(6)
    assert publishes.items[-1]["prev-id"] == str(lost)  # Pushpin asks for what was lost


async def test_an_unreachable_push_server_never_holds_up_the_poller(connected: Env) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    grip = with_grip(connected, down)
    await _held(connected, grip)
    polls = connected.services.runtime.hub.counts["polls"]
    for _ in range(3):
        connected.sim.player("demo").skip()
        await connected.clock.advance(6)
    assert connected.services.runtime.hub.counts["polls"] >= polls + 3
    assert grip.counts["published"] == 0
    assert grip.counts["given_up"] >= 1


async def test_each_change_goes_to_every_pushpin_and_one_down_stops_no_other(
    connected: Env,
) -> None:
    """Two instances: each change is posted once to each, with the same id and prev-id; while
    one refuses everything, the other still gets every change at once, and the refused one is
    retried and given up on its own."""
    taken: dict[str, list[dict[str, object]]] = {PUBLISH: [], SECOND: []}
    down: set[str] = set()

    def publishes(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if url in down:
            return httpx.Response(503)
        taken[url].extend(json.loads(request.content)["items"])
        return httpx.Response(200, text="Published\n")

    grip = with_grip(connected, publishes, SECOND)
    await _held(connected, grip)
    connected.sim.player("demo").skip()
    await connected.clock.advance(6)
    assert len(taken[PUBLISH]) == len(taken[SECOND]) == 1
    assert taken[PUBLISH] == taken[SECOND]  # the same item: channel, id, prev-id, content
    down.add(SECOND)
    connected.sim.player("demo").skip()
    await connected.clock.advance(0.9)  # within the first poll: before any retry's wait
    assert len(taken[PUBLISH]) == 2
    await connected.clock.advance(10)
    assert (len(taken[SECOND]), grip.counts["given_up"]) == (1, 1)
    assert grip.counts["retried"] == len(RETRY_DELAYS)
    down.clear()
    connected.sim.player("demo").skip()
    await connected.clock.advance(6)
    assert taken[PUBLISH][-1] == taken[SECOND][-1]
    assert taken[SECOND][-1]["prev-id"] == taken[PUBLISH][1]["id"]  # names the one it lost


# -- who holds what ---------------------------------------------------------------------------


def _sub(account: str, **fields: object) -> bytes:
    body = {"channel": channel_of(account), "from": "pushpin-handler_1", "mode": "stream"}
    return b"sub J" + json.dumps({**body, **fields}).encode()


async def test_accounts_are_followed_while_pushpin_says_it_holds_them(connected: Env) -> None:
    grip = with_grip(connected, Publishes())
    grip.stats(_sub("demo", subscribers=3, ttl=60))
    await connected.clock.advance(0.1)
    assert grip.accounts == {"demo"}
    await connected.clock.advance(60)
    grip.stats(_sub("demo", subscribers=3, ttl=60))  # refreshed
    await connected.clock.advance(60)
    grip.reap()
    assert grip.accounts == {"demo"}
    grip.stats(_sub("demo", unavailable=True))
    assert grip.accounts == frozenset()
    await connected.clock.advance(0.1)
    assert connected.services.runtime.hub.viewers("demo") == 0  # the follower is gone
    assert "grip-test-key" not in repr(grip)


async def test_an_account_is_kept_while_any_pushpin_holds_it(connected: Env) -> None:
    """Two instances report the same ``from`` (each handler's default); the last stream leaving
    one lets nothing go while the other still holds the account."""
    grip = with_grip(connected, Publishes(), SECOND)
    grip.stats(_sub("demo", subscribers=2, ttl=60), "ipc:///a")
    grip.stats(_sub("demo", subscribers=5, ttl=60), "ipc:///b")
    await connected.clock.advance(0.1)
    grip.stats(_sub("demo", unavailable=True), "ipc:///a")
    assert grip.accounts == {"demo"}
    grip.stats(_sub("demo", unavailable=True), "ipc:///b")
    assert grip.accounts == frozenset()


async def test_a_subscription_not_refreshed_is_let_go(connected: Env) -> None:
    grip = with_grip(connected, Publishes())
    grip.stats(_sub("demo", subscribers=1, ttl=60))
    await connected.clock.advance(60 + 29)
    grip.reap()
    assert grip.accounts == {"demo"}
    await connected.clock.advance(2)
    grip.reap()
    assert grip.accounts == frozenset()


async def test_nothing_is_let_go_before_the_stats_socket_speaks(connected: Env) -> None:
    grip = with_grip(connected, Publishes())
    await _held(connected, grip)
    await connected.clock.advance(3600)
    grip.reap()
    assert grip.accounts == {"demo"}
    grip.stats(b"report J{}")
    grip.reap()
    assert grip.accounts == frozenset()  # the request's grace is long over


async def test_stats_of_other_channels_and_junk_change_nothing(connected: Env) -> None:
    grip = with_grip(connected, Publishes())
    for message in (
        b"sub J{not json",
        b"sub J[1, 2]",
        b'sub J{"channel": "other.demo", "mode": "stream", "ttl": 60}',
        b'sub J{"channel": "nowplaying.demo", "mode": "response", "ttl": 60}',
        b"sub T5:hello,",
        b"conn J{}",
    ):
        grip.stats(message)
    assert grip.accounts == frozenset()
