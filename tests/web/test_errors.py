"""Refusals: every one — from a route, from the middleware before any route (limits, trusted
hosts), or from a store that is down — is the one ``{"error", "message"}`` envelope built by
``web/errors.py``, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from harness.app import SAME, Env
from harness.helpers import edge_client
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from nowplaying import schema
from nowplaying.web.errors import (
    BadRequest,
    BodyTooLarge,
    Busy,
    CrossSite,
    HeadersTooLarge,
    Refusal,
    TooManyRequests,
)

pytestmark = pytest.mark.anyio


async def test_owner_refusals_are_the_envelope(connected: Env) -> None:
    """A cross-site write, a bad settings body, no session: each the model's envelope."""
    cross = await connected.client.post(
        "/api/account/publish", headers={"Origin": "https://evil.example"}
    )
    bad = await connected.client.post("/api/account/settings", json={"x": 1}, headers=SAME)
    connected.client.cookies.clear()
    anonymous = await connected.client.get("/api/account")
    assert (cross.status_code, cross.json()) == (
        403,
        {"error": "forbidden", "message": "Cross-site requests are refused."},
    )
    assert (bad.status_code, bad.json()) == (
        400,
        {"error": "bad_request", "message": 'Send {"lastPlayed": true|false}.'},
    )
    assert (anonymous.status_code, anonymous.json()) == (401, {"error": "not_connected"})
    for response in (cross, bad, anonymous):
        assert response.headers["cache-control"] == "private, no-store"


async def test_a_full_server_refuses_a_stream_with_the_envelope(connected: Env) -> None:
    """No descriptor left for one more stream: 503 busy, Retry-After, the connection closed."""
    connected.services.streams.counts["open"] = 10**9
    response = await connected.client.get("/api/spotify/events")
    assert response.status_code == 503
    assert response.json() == {
        "error": "busy",
        "message": "Too many viewers on this server; try again shortly.",
    }
    assert response.headers["retry-after"] == "5"
    assert response.headers["connection"] == "close"
    assert connected.services.streams.counts["refused"] == 1


async def _echo(request: Request) -> Response:
    return PlainTextResponse(str(len(await request.body())))


@pytest.fixture
async def guarded() -> AsyncIterator[httpx.AsyncClient]:
    """A tiny app behind the edge (limits, rate limit, host check), with small limits."""
    async with edge_client(_echo) as client:
        yield client


def _same_as(response: httpx.Response, refusal: Refusal) -> None:
    """The middleware's answer is the refusal's own response: status, body, Retry-After."""
    expected = refusal.response({})
    assert response.status_code == expected.status_code
    assert response.content == bytes(expected.body)
    schema.Error.model_validate(response.json())
    assert response.headers.get("retry-after") == expected.headers.get("retry-after")
    assert response.headers["content-type"] == "application/json"


async def test_middleware_refusals_are_the_envelope(guarded: httpx.AsyncClient) -> None:
    """413 (declared and streamed), 431, 429 and an unknown host: each the one envelope,
    never cached; the limits also say nosniff (they answer outside the security headers)."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * 50

    declared = await guarded.post("/p/x", content=b"x" * 101)
    streamed = await guarded.post("/p/x", content=chunks())
    headers = await guarded.get("/p/x", headers={"X-Padding": "x" * 2000})
    allowed = await guarded.get("/p/limited")
    limited = await guarded.get("/p/limited")
    host = await guarded.get("/p/x", headers={"Host": "evil.example"})
    assert allowed.status_code == 200
    _same_as(declared, BodyTooLarge("The request body is too large."))
    _same_as(streamed, BodyTooLarge("The request body is too large."))
    _same_as(headers, HeadersTooLarge("Request headers are too large."))
    _same_as(
        limited, TooManyRequests("Too many requests from this address; slow down.", retry_after=1)
    )
    _same_as(host, BadRequest("Unknown host."))
    for response in (declared, streamed, headers, limited):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert host.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("refusal", "status", "slug"),
    [
        (BadRequest(), 400, "bad_request"),
        (CrossSite(), 403, "forbidden"),
        (BodyTooLarge(), 413, "body_too_large"),
        (HeadersTooLarge(), 431, "headers_too_large"),
        (TooManyRequests(retry_after=0.2), 429, "too_many_requests"),
        (Busy(retry_after=5), 503, "busy"),
    ],
)
def test_each_new_refusal_has_its_status_and_slug(refusal: Refusal, status: int, slug: str) -> None:
    response = refusal.response({})
    assert response.status_code == status
    assert schema.Error.model_validate_json(bytes(response.body)).error == slug


def test_too_many_requests_rounds_retry_after_up() -> None:
    """Retry-After is whole seconds, rounded up (never early), at least one."""
    assert TooManyRequests(retry_after=0.2).response({}).headers["retry-after"] == "1"
    assert TooManyRequests(retry_after=7.1).response({}).headers["retry-after"] == "8"


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
