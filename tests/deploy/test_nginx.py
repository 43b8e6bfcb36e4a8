"""The shipped ``deploy/nginx.conf`` in front of a real ``nowplaying serve``, with Debian's nginx.

TLS with a self-signed certificate gives ``Secure`` + ``__Host-`` cookies through the whole
login; Server-Sent Events pass unbuffered (a change arrives before any heartbeat); the app
believes the proxy's ``X-Forwarded-For`` and a client cannot forge it; the public JSON and SVG
are cached at the edge, so the origin serves about one request per second per URL however many
the proxy answers (counted with the origin's own ``/metrics``, not timed). Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
from collections.abc import Iterator

import httpx
import pytest
from harness.app import ORIGIN, Env
from harness.nginx import METRICS_TOKEN, Stack, edge_stack, login, nginx_binary, publish
from harness.servers import CONTROL
from harness.sse import SSEReader

from nowplaying.web.public import EDGE_CACHE

pytestmark = pytest.mark.anyio


def require_nginx() -> None:
    if nginx_binary() is not None:
        return
    if os.environ.get("NOWPLAYING_REQUIRE_SERVICES") == "1":
        pytest.fail("nginx is not installed, and NOWPLAYING_REQUIRE_SERVICES=1")
    pytest.skip("nginx is not installed (apt-get install nginx)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One origin in demo mode that trusts the proxy, and nginx with the shipped file."""
    require_nginx()
    with edge_stack(tmp_path_factory.mktemp("nginx")) as running:
        yield running


@pytest.fixture(scope="module")
def public_id(stack: Stack) -> str:
    """Signed in and published once, through the proxy."""

    return asyncio.run(publish(stack))


def _cookie_lines(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


async def test_tls_gives_secure_host_prefixed_cookies(stack: Stack) -> None:
    """Over the proxy's TLS, every cookie of the login is ``__Host-``, ``Secure``, ``HttpOnly``,
    ``Path=/`` and has no ``Domain``."""
    async with stack.client() as http:
        start = await http.get("/login")
        assert start.status_code == 302
        done = await login(http)
    for response in (start, done):
        cookies = _cookie_lines(response)
        assert cookies
        for line in cookies:
            attrs = [a.strip().lower() for a in line.split(";")]
            assert line.startswith("__Host-np_"), line
            assert "secure" in attrs, line
            assert "httponly" in attrs, line
            assert "path=/" in attrs, line
            assert not any(a.startswith("domain=") for a in attrs), line
    assert any(line.startswith("__Host-np_session=") for line in _cookie_lines(done))


async def test_plain_http_redirects_to_https_and_healthz_passes(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.proxy.http, timeout=10) as http:
        moved = await http.get("/p/anything")
        assert moved.status_code == 301
        assert moved.headers["location"].startswith("https://")
        health = await http.get("/healthz")
        assert health.status_code == 200
        assert health.json()["ok"] is True


async def test_sse_passes_unbuffered(stack: Stack, public_id: str) -> None:
    """A change reaches a viewer through the proxy as its own event, before any heartbeat."""
    lines: list[str] = []
    events = f"/p/{public_id}/events"
    async with stack.client() as http, http.stream("GET", events, timeout=30) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        data = []
        async with asyncio.timeout(20):
            async for line in stream.aiter_lines():
                lines.append(line)
                if line.startswith("data:"):
                    data.append(json.loads(line.removeprefix("data:")))
                    if len(data) == 1:
                        skipped = await http.post(f"{CONTROL}/skip")
                        assert skipped.status_code == 200, skipped.text
                    else:
                        break
    assert len(data) == 2
    assert data[0].get("title") != data[1].get("title")
    assert ": heartbeat" not in lines, lines


async def test_forwarded_for_is_believed_from_the_proxy_and_not_forgeable(stack: Stack) -> None:
    """The login rate limit (burst 10) counts per client address as the proxy saw it: one
    address runs out, another does not, and a forged ``X-Forwarded-For`` changes nothing."""
    async with stack.client("127.0.0.2") as first, stack.client("127.0.0.3") as second:
        statuses = [(await first.get("/login")).status_code for _ in range(11)]
        assert statuses[:10] == [302] * 10
        assert statuses[10] == 429
        forged = await first.get("/login", headers={"X-Forwarded-For": "127.0.0.9"})
        assert forged.status_code == 429
        assert (await second.get("/login")).status_code == 302


CAP = 4
"""Open requests per forwarded client in the capped stack."""


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    """The same stack with a per-address cap of :data:`CAP` open requests, and a public id."""
    require_nginx()
    caps = {"NOWPLAYING_CONNECTIONS_PER_ADDRESS": str(CAP)}
    with edge_stack(tmp_path_factory.mktemp("nginx-capped"), caps) as running:
        yield running, asyncio.run(publish(running))


async def test_one_client_past_its_cap_through_nginx_gets_429s_and_others_are_served(
    capped: tuple[Stack, str],
) -> None:
    """Through the shipped nginx (one trusted peer for every client), 127.0.0.2 holding its
    four event streams gets a 429 for anything more, while 127.0.0.3 and .4 through the same
    proxy are served; once one stream ends 127.0.0.2 is served again; no 5xx anywhere."""
    stack, public_id = capped
    events, card = f"/p/{public_id}/events", f"/p/{public_id}.json"
    statuses: list[int] = []
    async with (
        stack.client("127.0.0.2") as greedy,
        stack.client("127.0.0.3") as other,
        stack.client("127.0.0.4") as third,
        contextlib.AsyncExitStack() as held,
    ):
        streams = [
            await held.enter_async_context(greedy.stream("GET", events, timeout=30))
            for _ in range(CAP)
        ]
        statuses += [s.status_code for s in streams]
        assert statuses == [200] * CAP
        refused = []
        for path in (events, "/healthz", "/"):
            async with greedy.stream("GET", path, timeout=30) as answer:  # headers only
                refused.append(
                    (answer.status_code, await answer.aread() if path != events else b"")
                )
        statuses += [status for status, _ in refused]
        assert [status for status, _ in refused] == [429] * 3
        assert b"Too many open requests" in refused[1][1]
        for http in (other, third):
            answers = [await http.get(path) for path in ("/healthz", card, "/")]
            statuses += [a.status_code for a in answers]
            assert [a.status_code for a in answers] == [200] * 3
            async with http.stream("GET", events, timeout=30) as stream:
                statuses.append(stream.status_code)
                assert stream.status_code == 200
        await streams.pop().aclose()  # 127.0.0.2 ends one stream: below its cap again
        for _ in range(200):  # the origin hears of the hang-up through nginx: a moment
            again = await greedy.get("/healthz")
            if again.status_code != 429:
                break
            await asyncio.sleep(0.1)
        statuses.append(again.status_code)
        assert again.status_code == 200
    assert not [s for s in statuses if s >= 500], statuses
    counted = await stack.origin_metric("nowplaying_edge_closed_total", reason="forwarded_cap")
    assert counted >= 3


async def test_metrics_are_not_served_through_the_proxy(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 404
    assert "nowplaying_" not in response.text


@pytest.mark.parametrize(
    ("suffix", "route"), [(".json", "/p/{public_id}.json"), (".svg", "/p/{public_id}.svg")]
)
async def test_edge_cache_absorbs_the_fan_out(
    stack: Stack, public_id: str, suffix: str, route: str
) -> None:
    """400 requests through the proxy, 20 at a time, over a measured span: the origin answers
    at most about one per second of that span (plus the first miss), and at least one."""
    url = f"/p/{public_id}{suffix}"
    before = await stack.origin_count(route)
    statuses: list[int] = []
    caches: list[str] = []

    async def viewer(http: httpx.AsyncClient, n: int) -> None:
        for _ in range(n):
            response = await http.get(url)
            statuses.append(response.status_code)
            caches.append(response.headers.get("x-cache-status", ""))

    async with stack.client() as http:
        started = time.monotonic()
        await asyncio.gather(*(viewer(http, 20) for _ in range(20)))
        span = time.monotonic() - started
    origin = await stack.origin_count(route) - before
    assert statuses == [200] * 400
    assert 1 <= origin <= math.ceil(span) + 2, (origin, span)
    assert caches.count("HIT") + caches.count("UPDATING") + caches.count("STALE") >= 400 - origin


@pytest.fixture(scope="module")
def uncached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    """The shipped file without its edge cache (each viewer's request reaches the origin), in
    front of an origin that trusts it; signed in and published: (stack, public id)."""
    require_nginx()
    with edge_stack(tmp_path_factory.mktemp("nginx-uncached"), edge_cache=False) as running:
        yield running, asyncio.run(publish(running))


async def test_the_origin_answers_the_proxy_on_its_fast_path(uncached: tuple[Stack, str]) -> None:
    """The public JSON through nginx, its cache off: the origin behind it answers the proxy's
    forwarded requests on its fast path (``nowplaying_fast_answers_total`` rises; the first
    request of each second is the app's), and every viewer gets a 200. (With the shipped cache
    the origin sees about one request per URL a second, the fast path's answer holds for one:
    there the proxy's cache is the fast path.)"""
    stack, public_id = uncached
    url, route = f"/p/{public_id}.json", "/p/{public_id}.json"
    fast = "nowplaying_fast_answers_total"
    before = await stack.origin_metric(fast, route=route)
    async with stack.client() as http:
        statuses = [(await http.get(url)).status_code for _ in range(20)]
    assert statuses == [200] * 20
    assert await stack.origin_metric(fast, route=route) > before


async def test_public_json_and_svg_let_a_shared_cache_keep_them_a_second(connected: Env) -> None:
    """In-process: the public JSON and the card (200 and 304) carry ``s-maxage=1`` with
    ``max-age=0`` (browsers and camo revalidate, the ETag stays); a 404 and the event stream
    say ``no-cache``."""
    connected.sim.player("demo").play(0)
    published = await connected.client.post("/api/account/publish", headers={"Origin": ORIGIN})
    public_id = published.json()["publicId"]
    edge = EDGE_CACHE["Cache-Control"]
    assert "s-maxage=1" in edge
    assert "max-age=0" in edge
    data = await connected.client.get(f"/p/{public_id}.json")
    assert (data.status_code, data.headers["cache-control"]) == (200, edge)
    card = await connected.client.get(f"/p/{public_id}.svg")
    assert (card.status_code, card.headers["cache-control"]) == (200, edge)
    again = await connected.client.get(
        f"/p/{public_id}.svg", headers={"If-None-Match": card.headers["etag"]}
    )
    assert (again.status_code, again.headers["cache-control"]) == (304, edge)
    missing = await connected.client.get("/p/AAAAAAAAAAAAAAAAAAAA.json")
    assert missing.status_code == 404
    assert missing.headers["cache-control"].startswith("no-cache")
    async with SSEReader(connected.app, f"/p/{public_id}/events") as sse:
        await sse.wait_for(1)
        assert sse.response_headers["cache-control"].startswith("no-cache")
