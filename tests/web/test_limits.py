"""The abuse limits with their defaults: body and header sizes, the login and public rate
limits, which client address counts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from harness.app import ORIGIN, SAME, Env
from harness.fuzz import (
    describe,
    running,
)

from nowplaying.clock import FakeClock

pytestmark = pytest.mark.anyio


async def test_body_over_64k_is_413_json(connected: Env) -> None:
    """A settings body over 64 KiB, declared or streamed: 413 JSON, nothing changed."""
    big = b'{"lastPlayed": true, "pad": "' + b"x" * (64 * 1024) + b'"}'
    declared = await connected.client.post("/api/account/settings", content=big, headers=SAME)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    streamed = await connected.client.post("/api/account/settings", content=chunks(), headers=SAME)
    assert "content-length" not in streamed.request.headers
    for response in (declared, streamed):
        assert response.status_code == 413, describe(response)
        assert response.json()["error"] == "body_too_large"
    account = await connected.services.runtime.store.get_account("demo")
    assert account is not None and account.show_last_played is False


async def test_headers_over_16k_are_431(connected: Env) -> None:
    """Request headers over 16 KiB: 431 JSON, on pages and APIs alike."""
    for path in ("/", "/api/spotify", "/login"):
        response = await connected.client.get(path, headers={"X-Padding": "x" * (16 * 1024)})
        assert response.status_code == 431, describe(response)
        assert response.json()["error"] == "headers_too_large"


async def test_login_hammering_is_rate_limited(env: Env) -> None:
    """/login 30 times from one address: 429s with Retry-After, and no token requests."""
    responses = [await env.client.get("/login") for _ in range(30)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited, [r.status_code for r in responses]
    assert all(int(r.headers["retry-after"]) >= 1 for r in limited)
    assert all(r.json()["error"] == "too_many_requests" for r in limited)
    assert {r.status_code for r in responses} == {302, 429}
    assert env.sim.calls["token"] == 0


@pytest.mark.parametrize(
    "path", ["/login/lastfm", "/callback/lastfm", "/login/listenbrainz", "/callback"]
)
async def test_every_sign_in_route_shares_the_login_limit(env: Env, path: str) -> None:
    """Ten /login, then any other sign-in route: refused, the same bucket; /p/ is not in it."""
    assert all([(await env.client.get("/login")).status_code == 302 for _ in range(10)])
    assert (await env.client.get(path)).status_code == 429
    assert (await env.client.get("/p/nothing.json")).status_code == 404


async def test_public_flood_is_limited_after_the_burst_and_costs_one_call(connected: Env) -> None:
    """200 quick /p/{id}.json: 120 answered, then 429s; exactly one currently-playing call."""
    public_id = (await connected.client.post("/api/account/publish", headers=SAME)).json()[
        "publicId"
    ]
    await connected.services.runtime.hub.forget("demo")
    connected.sim.reset_calls()
    statuses = []
    for _ in range(200):
        response = await connected.client.get(f"/p/{public_id}.json")
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1
    assert statuses == [200] * 120 + [429] * 80
    assert connected.sim.calls["currently-playing"] == 1  # the first answer needs one, no more


async def test_forwarded_for_is_ignored_without_a_trusted_proxy(env: Env) -> None:
    """A forged X-Forwarded-For does not buy a fresh bucket: the 11th login is refused."""
    statuses = [
        (await env.client.get("/login", headers={"X-Forwarded-For": f"198.51.100.{i}"})).status_code
        for i in range(20)
    ]
    assert statuses == [302] * 10 + [429] * 10


async def test_forwarded_for_is_believed_from_a_trusted_proxy(
    tmp_path: Path, clock: FakeClock
) -> None:
    """With the proxy listed, each forwarded address has its own bucket; others are ignored."""
    async with running(tmp_path, clock, nowplaying_trusted_proxies=["127.0.0.1"]) as env:
        proxied = [
            await env.client.get("/login", headers={"X-Forwarded-For": f"198.51.100.{i}"})
            for i in range(30)
        ]
        assert [r.status_code for r in proxied] == [302] * 30
        same = [
            (await env.client.get("/login", headers={"X-Forwarded-For": "203.0.113.7"})).status_code
            for _ in range(11)
        ]
        assert same == [302] * 10 + [429]
        stranger = httpx.ASGITransport(app=env.app, client=("192.0.2.50", 4000))
        async with httpx.AsyncClient(transport=stranger, base_url=ORIGIN) as direct:
            forged = [
                (
                    await direct.get("/login", headers={"X-Forwarded-For": f"198.51.100.{i}"})
                ).status_code
                for i in range(100, 120)
            ]
        assert forged == [302] * 10 + [429] * 10
