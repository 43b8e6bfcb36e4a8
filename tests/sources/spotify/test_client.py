"""The Spotify client against the simulated Spotify, in-process: every error row of the
contract's token table and every currently-playing case."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from harness.helpers import consent
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nowplaying.clock import FakeClock
from nowplaying.models import Kind
from nowplaying.simulator import Grant, Simulator
from nowplaying.sources import bounds
from nowplaying.sources.bounds import MAX_RETRY_AFTER
from nowplaying.sources.spotify.client import SpotifyClient
from nowplaying.sources.spotify.errors import (
    AccessTokenRejected,
    BadResponse,
    Forbidden,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    RateLimited,
    SpotifyError,
    SpotifyUnavailable,
)
from nowplaying.sources.spotify.oauth import make_pkce

pytestmark = pytest.mark.anyio
REDIRECT = "http://127.0.0.1:8000/callback"


@pytest.fixture
async def sim(clock: FakeClock) -> Simulator:
    s = Simulator(clock=clock, client_id="cid", client_secret="sec", redirect_uris=(REDIRECT,))
    s.player("demo").set_gaps(0)
    return s


@pytest.fixture
async def http(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app), base_url="http://sim.test"
    ) as client:
        yield client


def refresh_of(grant: Grant) -> str:
    """A simulator grant's refresh token (always present for a user grant)."""
    assert grant.refresh_token
    return grant.refresh_token


def answering(status: int, body: object) -> httpx.AsyncClient:
    """An HTTP client whose every request gets ``status`` with ``body`` as JSON."""
    return httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(status, json=body))
    )


def client_for(http: httpx.AsyncClient, clock: FakeClock, **kw: Any) -> SpotifyClient:
    values: dict[str, Any] = {
        "client_id": "cid",
        "client_secret": SecretStr("sec"),
        "accounts_url": "http://sim.test",
        "api_url": "http://sim.test/v1",
        "clock": clock,
    }
    values.update(kw)
    return SpotifyClient(http, **values)


async def code_for(http: httpx.AsyncClient, client: SpotifyClient, challenge: str) -> str:
    url = client.authorize_url(redirect_uri=REDIRECT, state="s", code_challenge=challenge)
    redirect = await consent(http, url)
    return parse_qs(urlsplit(redirect.headers["location"]).query)["code"][0]


async def test_full_code_flow_and_refresh(http: httpx.AsyncClient, clock: FakeClock) -> None:
    """Authorize → code → tokens (Basic auth + verifier) → me → refresh keeps the old token."""
    client = client_for(http, clock)
    verifier, challenge = make_pkce()
    token = await client.exchange_code(
        code=await code_for(http, client, challenge), redirect_uri=REDIRECT, code_verifier=verifier
    )
    assert token.refresh_token
    assert token.expires_at == clock.now() + 3600
    assert "user-read-currently-playing" in token.scope
    assert (await client.me(token.access_token)).display_name == "Demo Listener"
    refreshed = await client.refresh(token.refresh_token)
    assert refreshed.refresh_token == token.refresh_token  # omitted: the old one is kept
    assert refreshed.access_token != token.access_token


async def test_rotation_returns_the_new_refresh_token(
    sim: Simulator, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """In rotate mode the new refresh token comes back and the old one is revoked."""
    sim.set_refresh_mode("rotate")
    grant = sim.grant("demo")
    client = client_for(http, clock)
    new = await client.refresh(refresh_of(grant))
    assert new.refresh_token and new.refresh_token != grant.refresh_token
    with pytest.raises(InvalidGrant, match="Refresh token revoked"):
        await client.refresh(refresh_of(grant))


@pytest.mark.parametrize(
    ("case", "description"),
    [
        ("unknown-code", "Invalid authorization code"),
        ("reused-code", "Invalid authorization code"),
        ("expired-code", "Invalid authorization code"),
        ("wrong-redirect", "Invalid redirect URI"),
        ("wrong-verifier", "code_verifier was incorrect"),
    ],
)
async def test_code_exchange_errors(
    http: httpx.AsyncClient, clock: FakeClock, case: str, description: str
) -> None:
    """Every invalid_grant row of the code exchange becomes InvalidGrant with its description."""
    client = client_for(http, clock)
    verifier, challenge = make_pkce()
    code = "nope" if case == "unknown-code" else await code_for(http, client, challenge)
    if case == "reused-code":
        await client.exchange_code(code=code, redirect_uri=REDIRECT, code_verifier=verifier)
    if case == "expired-code":
        await clock.advance(601)
    redirect = "http://127.0.0.1:9/other" if case == "wrong-redirect" else REDIRECT
    if case == "wrong-verifier":
        verifier = make_pkce()[0]
    with pytest.raises(InvalidGrant) as info:
        await client.exchange_code(code=code, redirect_uri=redirect, code_verifier=verifier)
    assert info.value.description == description


@pytest.mark.parametrize(
    ("case", "description"),
    [
        ("unknown", "Invalid refresh token"),
        ("revoked", "Refresh token revoked"),
        ("expired", "Refresh token expired"),
    ],
)
async def test_refresh_errors(
    sim: Simulator, http: httpx.AsyncClient, clock: FakeClock, case: str, description: str
) -> None:
    """Refresh: unknown, revoked and six-months-expired grants are InvalidGrant (reconnect)."""
    grant = sim.grant("demo")
    if case == "revoked":
        sim.revoke("demo")
    if case == "expired":
        await clock.advance(183 * 86400)
    token = "made-up" if case == "unknown" else refresh_of(grant)
    with pytest.raises(InvalidGrant) as info:
        await client_for(http, clock).refresh(token)
    assert info.value.description == description


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"client_id": "who"}, "Invalid client"),
        ({"client_secret": SecretStr("wrong")}, "Invalid client secret"),
    ],
)
async def test_invalid_client(
    sim: Simulator, http: httpx.AsyncClient, clock: FakeClock, kw: dict[str, Any], message: str
) -> None:
    """An unknown client or a wrong secret is InvalidClient (our configuration), not a grant."""
    grant = sim.grant("demo")
    with pytest.raises(InvalidClient, match=message):
        await client_for(http, clock, **kw).refresh(refresh_of(grant))


async def test_request_shape_errors_map_to_invalid_request(clock: FakeClock) -> None:
    """invalid_request and unsupported_grant_type (never sent by us) map to InvalidRequest."""
    for error, desc in (
        ("invalid_request", "code_verifier required"),
        ("unsupported_grant_type", "grant_type parameter is missing"),
    ):
        body = {"error": error, "error_description": desc}
        mock = answering(400, body)
        with pytest.raises(InvalidRequest, match=desc):
            await client_for(mock, clock).refresh("r")


async def test_simulator_rejects_json_bodies(http: httpx.AsyncClient) -> None:
    """The real contract: JSON to the token endpoint is unsupported_grant_type."""
    basic = base64.b64encode(b"cid:sec").decode()
    response = await http.post(
        "/api/token",
        json={"grant_type": "refresh_token", "refresh_token": "x"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.json() == {
        "error": "unsupported_grant_type",
        "error_description": "grant_type parameter is missing",
    }


@pytest.fixture
async def access(sim: Simulator) -> str:
    return sim.grant(
        "demo", scopes=("user-read-currently-playing", "user-read-recently-played")
    ).access_token


async def test_currently_playing_cases(
    sim: Simulator, http: httpx.AsyncClient, clock: FakeClock, access: str
) -> None:
    """Track, episode, ad, paused, local file, 204 and private session, as the client reads them."""
    client = client_for(http, clock)
    player = sim.player("demo")
    player.play(0, progress_ms=5000)
    np = await client.currently_playing(access)
    assert np.kind is Kind.TRACK and np.is_playing and np.progress_ms == 5000
    assert np.item and np.item.title == "Hoppípolla" and np.item.image_url
    player.play(4)
    np = await client.currently_playing(access)
    assert np.kind is Kind.EPISODE and np.item and np.item.artist == "The Escaping Hour"
    player.play_ad()
    np = await client.currently_playing(access)
    assert np.kind is Kind.AD and np.item is None and np.active
    player.play(0)
    player.pause()
    np = await client.currently_playing(access)
    assert not np.is_playing and np.item is not None
    player.play(7)
    np = await client.currently_playing(access)
    assert np.item and np.item.is_local and np.item.url is None and np.item.image_url is None
    player.stop()
    assert not (await client.currently_playing(access)).active
    player.resume()
    player.private_session(True)
    assert not (await client.currently_playing(access)).active


async def test_episode_without_additional_types_comes_back_empty(
    sim: Simulator, http: httpx.AsyncClient, access: str
) -> None:
    """Why we send additional_types: without it a podcast has item null."""
    sim.player("demo").play(4)
    response = await http.get(
        "/v1/me/player/currently-playing", headers={"Authorization": f"Bearer {access}"}
    )
    assert response.json()["item"] is None


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"status": 500}, SpotifyUnavailable),
        ({"status": 502}, SpotifyUnavailable),
        ({"status": 503}, SpotifyUnavailable),
        ({"status": 429, "retry_after": 7}, RateLimited),
        ({"status": 403, "body": "User not registered in the Developer Dashboard"}, Forbidden),
    ],
)
async def test_api_errors(
    sim: Simulator,
    http: httpx.AsyncClient,
    clock: FakeClock,
    access: str,
    fault: dict[str, Any],
    error: type[Exception],
) -> None:
    """5xx, 429 and the plain-text 403 map to the error tree."""
    sim.faults.add("currently-playing", **fault)
    with pytest.raises(error):
        await client_for(http, clock).currently_playing(access)


async def test_rate_limit_carries_retry_after_and_reason(
    sim: Simulator, http: httpx.AsyncClient, clock: FakeClock, access: str
) -> None:
    """429 QUOTA_EXCEEDED: retry_after from the header, reason from the body."""
    sim.faults.add("currently-playing", status=429, retry_after=7200, reason="QUOTA_EXCEEDED")
    with pytest.raises(RateLimited) as info:
        await client_for(http, clock).currently_playing(access)
    assert info.value.retry_after == 7200
    assert info.value.reason == "QUOTA_EXCEEDED"


async def test_premium_403_reason(
    sim: Simulator, http: httpx.AsyncClient, clock: FakeClock, access: str
) -> None:
    """The Premium 403's plain-text reason is kept."""
    msg = "Active premium subscription required for the owner of the app."
    sim.faults.add("currently-playing", status=403, body=msg)
    with pytest.raises(Forbidden) as info:
        await client_for(http, clock).currently_playing(access)
    assert info.value.reason == msg


async def test_expired_access_token_is_rejected(
    sim: Simulator, http: httpx.AsyncClient, clock: FakeClock, access: str
) -> None:
    """401 from the API is AccessTokenRejected (the token manager refreshes once)."""
    sim.expire_access_tokens("demo")
    with pytest.raises(AccessTokenRejected):
        await client_for(http, clock).currently_playing(access)


async def test_hang_is_unavailable_after_the_deadline(
    sim: Simulator, http: httpx.AsyncClient, clock: FakeClock, access: str
) -> None:
    """A hanging Spotify becomes SpotifyUnavailable at the deadline, not a stuck request."""
    sim.faults.add("currently-playing", hang=True)
    call = asyncio.ensure_future(client_for(http, clock, deadline=0.2).currently_playing(access))
    await _deadline_set(clock)
    await clock.advance(0.19)
    assert not call.done()
    await clock.advance(0.01)
    with pytest.raises(SpotifyUnavailable):
        await call


async def test_slow_token_answer_within_the_token_deadline(
    sim: Simulator, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A token answer slower than API calls may take still arrives (rotation is not lost)."""
    sim.set_refresh_mode("rotate")
    grant = sim.grant("demo")
    sim.faults.add("token", delay=0.3)
    client = client_for(http, clock, deadline=0.1, token_deadline=2.0)
    assert grant.refresh_token
    call = asyncio.ensure_future(client.refresh(refresh_of(grant)))
    await _deadline_set(clock)
    await clock.advance(1.0)  # past the API deadline, within the token one
    new = await call
    assert new.refresh_token != grant.refresh_token


async def _deadline_set(clock: FakeClock) -> None:
    """Wait until the request in flight has set its deadline on the clock."""
    while clock.sleepers == 0:  # noqa: ASYNC110 - the fake clock has no event to wait on
        await asyncio.sleep(0)


async def test_recently_played_and_limits(
    http: httpx.AsyncClient, clock: FakeClock, access: str
) -> None:
    """Recently played returns tracks with times; a limit outside 1-50 is refused locally."""
    client = client_for(http, clock)
    items = await client.recently_played(access, limit=3)
    assert 1 <= len(items) <= 3
    assert all(p.item.kind is Kind.TRACK for p in items)
    with pytest.raises(ValueError, match="limit"):
        await client.recently_played(access, limit=51)


async def test_recently_played_without_scope_is_forbidden(
    sim: Simulator, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Missing user-read-recently-played: Forbidden."""
    token = sim.grant("demo").access_token
    with pytest.raises(Forbidden):
        await client_for(http, clock).recently_played(token)


async def test_garbage_bodies_are_bad_responses(clock: FakeClock) -> None:
    """A token 200 without access_token, or a non-object, is BadResponse."""
    for body in ({"token_type": "Bearer"}, [1, 2]):
        mock = answering(200, body)
        with pytest.raises(BadResponse):
            await client_for(mock, clock).refresh("r")


# -- the error tree is closed: every httpx exception becomes a SpotifyError --------------------


def raising(error: Exception) -> httpx.AsyncClient:
    """An HTTP client whose every request raises ``error`` from the transport."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


HTTPX_ERRORS: list[tuple[Exception, type[SpotifyError]]] = [
    (httpx.ConnectError("refused"), SpotifyUnavailable),
    (httpx.ReadTimeout("slow"), SpotifyUnavailable),
    (httpx.RemoteProtocolError("peer closed"), SpotifyUnavailable),
    (httpx.ReadError("reset"), SpotifyUnavailable),
    (httpx.UnsupportedProtocol("ftp"), SpotifyUnavailable),
    (httpx.ProxyError("proxy"), SpotifyUnavailable),
    (httpx.DecodingError("bad gzip"), SpotifyUnavailable),
    (httpx.RequestError("anything else"), SpotifyUnavailable),
    (httpx.InvalidURL("bad url"), SpotifyUnavailable),
    (httpx.StreamConsumed(), SpotifyUnavailable),
    (httpx.ResponseNotRead(), SpotifyUnavailable),
    (httpx.TooManyRedirects("loop"), BadResponse),
]


@pytest.mark.parametrize(
    ("error", "expected"), HTTPX_ERRORS, ids=[type(e).__name__ for e, _ in HTTPX_ERRORS]
)
async def test_every_httpx_error_stays_in_the_tree(
    clock: FakeClock, error: Exception, expected: type[SpotifyError]
) -> None:
    """API and token calls alike: each httpx exception becomes its SpotifyError, chained."""
    client = client_for(raising(error), clock)
    calls: list[Callable[[], Any]] = [
        lambda: client.currently_playing("at"),
        lambda: client.refresh("rt"),
        lambda: client.exchange_code(code="c", redirect_uri=REDIRECT, code_verifier="v"),
        lambda: client.me("at"),
    ]
    for call in calls:
        with pytest.raises(expected) as info:
            await call()
        assert info.value.__cause__ is error


def corrupting(app: ASGIApp, path: str, headers: list[tuple[bytes, bytes]]) -> ASGIApp:
    """``app`` with ``headers`` added to its answers for ``path`` (the body is left as it is)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def patched(message: Message) -> None:
            if message["type"] == "http.response.start" and scope.get("path") == path:
                kept = [(k, v) for k, v in message["headers"] if k.lower() != b"content-length"]
                message = {**message, "headers": kept + headers}
            await send(message)

        await app(scope, receive, patched)

    return wrapped


async def test_bad_content_encoding_is_unavailable(
    sim: Simulator, clock: FakeClock, access: str
) -> None:
    """The simulator's JSON labelled gzip: httpx's DecodingError becomes SpotifyUnavailable."""
    app = corrupting(sim.app, "/v1/me/player/currently-playing", [(b"content-encoding", b"gzip")])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sim.test"
    ) as http:
        client = client_for(http, clock)
        with pytest.raises(SpotifyUnavailable) as info:
            await client.currently_playing(access)
        assert isinstance(info.value.__cause__, httpx.DecodingError)
        assert (await client.me(access)).id == "demo"  # other paths unaffected


def redirecting(request: httpx.Request) -> httpx.Response:
    """Every URL redirects to itself."""
    return httpx.Response(302, headers={"Location": str(request.url)})


async def test_redirect_loop_is_a_bad_response(clock: FakeClock) -> None:
    """A 3xx loop followed by the injected client: TooManyRedirects becomes BadResponse."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(redirecting), follow_redirects=True)
    client = client_for(http, clock)
    with pytest.raises(BadResponse) as info:
        await client.currently_playing("at")
    assert isinstance(info.value.__cause__, httpx.TooManyRedirects)
    with pytest.raises(BadResponse):
        await client.refresh("rt")


async def test_redirect_not_followed_is_a_bad_response(clock: FakeClock) -> None:
    """The app's client follows no redirect: a 3xx answer is BadResponse on both endpoints."""
    client = client_for(httpx.AsyncClient(transport=httpx.MockTransport(redirecting)), clock)
    with pytest.raises(BadResponse):
        await client.currently_playing("at")
    with pytest.raises(BadResponse):
        await client.refresh("rt")


def answering_raw(status: int, content: bytes, headers: dict[str, str] | None = None) -> Any:
    """An HTTP client whose every request gets ``status`` with ``content`` as it is."""
    return httpx.AsyncClient(
        transport=httpx.MockTransport(
            lambda request: httpx.Response(status, content=content, headers=headers)
        )
    )


NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "content",
    [NESTED, b"\xff\xfe not utf-8", b"{", b"[1, 2]", b"null"],
    ids=["nested", "not-utf-8", "truncated", "array", "null"],
)
async def test_unparseable_bodies_are_bad_responses(clock: FakeClock, content: bytes) -> None:
    """Deeply nested, undecodable, truncated or non-object JSON: BadResponse everywhere."""
    client = client_for(answering_raw(200, content), clock)
    for call in (
        lambda: client.currently_playing("at"),
        lambda: client.refresh("rt"),
        lambda: client.me("at"),
        lambda: client.recently_played("at"),
    ):
        with pytest.raises(BadResponse):
            await call()
    token_error = client_for(answering_raw(400, content), clock)
    with pytest.raises(BadResponse):
        await token_error.refresh("rt")


@pytest.mark.parametrize(
    "content", [NESTED, b"<html>busy</html>", b'{"error": "x"}'], ids=["nested", "html", "flat"]
)
async def test_429_with_any_body_is_rate_limited(clock: FakeClock, content: bytes) -> None:
    """A 429 whose body says nothing usable is still RateLimited (no reason), never a crash."""
    client = client_for(answering_raw(429, content, {"Retry-After": "12"}), clock)
    with pytest.raises(RateLimited) as info:
        await client.currently_playing("at")
    assert info.value.retry_after == 12
    assert info.value.reason is None
    assert not info.value.quota


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("30", 30.0), ("-5", 0.0), ("soon", 1.0), ("nan", 1.0), ("Infinity", MAX_RETRY_AFTER)],
)
async def test_retry_after_is_bounded(clock: FakeClock, header: str, seconds: float) -> None:
    """Retry-After: negative is 0, unreadable or NaN is 1 s, infinite or huge is a day."""
    client = client_for(answering_raw(429, b"", {"Retry-After": header}), clock)
    with pytest.raises(RateLimited) as info:
        await client.currently_playing("at")
    assert info.value.retry_after == seconds


@pytest.mark.parametrize(
    "body",
    [
        {"access_token": None, "expires_in": 3600},
        {"access_token": "", "expires_in": 3600},
        {"access_token": "a", "expires_in": "soon"},
        {"access_token": "a", "expires_in": -1},
        {"access_token": "a", "expires_in": 0},
        {"access_token": "a", "refresh_token": 42},
    ],
)
async def test_token_answers_that_break_the_contract(
    clock: FakeClock, body: dict[str, Any]
) -> None:
    """A token 200 with a missing, empty or non-string token, or a bad expiry: BadResponse."""
    with pytest.raises(BadResponse):
        await client_for(answering(200, body), clock).refresh("r")


async def test_non_finite_expiry_is_a_bad_response(clock: FakeClock) -> None:
    """Python's json reads NaN and Infinity; a token that never expires is refused."""
    for raw in (
        b'{"access_token": "a", "expires_in": NaN}',
        b'{"access_token": "a", "expires_in": Infinity}',
    ):
        with pytest.raises(BadResponse):
            await client_for(answering_raw(200, raw), clock).refresh("r")


async def test_profile_without_a_string_id_is_a_bad_response(clock: FakeClock) -> None:
    """The account id comes from /me: a null or numeric id is BadResponse, never "None"."""
    for body in ({"id": None}, {"id": 7}, {"display_name": "x"}):
        with pytest.raises(BadResponse):
            await client_for(answering(200, body), clock).me("at")


async def test_non_finite_numbers_in_playing_are_ignored(clock: FakeClock) -> None:
    """NaN / Infinity progress and duration read as unknown, not as an OverflowError."""
    raw = (
        b'{"is_playing": true, "currently_playing_type": "track", "progress_ms": Infinity,'
        b' "item": {"type": "track", "name": "t", "duration_ms": NaN, "artists": []}}'
    )
    np = await client_for(answering_raw(200, raw), clock).currently_playing("at")
    assert np.progress_ms is None
    assert np.item is not None and np.item.duration_ms == 0


async def test_quota_exceeded_is_told_apart(
    sim: Simulator, http: httpx.AsyncClient, clock: FakeClock, access: str
) -> None:
    """The simulator's QUOTA_EXCEEDED 429 parses as quota; a plain 429 as the rolling window."""
    sim.faults.add("currently-playing", status=429, retry_after=20520, reason="QUOTA_EXCEEDED")
    sim.faults.add("currently-playing", status=429, retry_after=3)
    client = client_for(http, clock)
    with pytest.raises(RateLimited) as quota:
        await client.currently_playing(access)
    assert quota.value.quota and quota.value.retry_after == 20520
    with pytest.raises(RateLimited) as window:
        await client.currently_playing(access)
    assert not window.value.quota and window.value.retry_after == 3


def _playing(item: dict[str, Any], **body: Any) -> bytes:
    return json.dumps(
        {"is_playing": True, "currently_playing_type": "track", "item": item, **body}
    ).encode()


async def test_a_ten_megabyte_title_is_cut_at_the_boundary(clock: FakeClock) -> None:
    item = {"type": "track", "name": "x" * 10_000_000, "artists": [{"name": "a" * 5000}] * 100}
    np = await client_for(answering_raw(200, _playing(item)), clock).currently_playing("at")
    assert np.item is not None
    assert len(np.item.title) == bounds.MAX_TEXT
    assert len(np.item.artists) == bounds.MAX_NAMES
    assert all(len(name) == bounds.MAX_TEXT for name in np.item.artists)


async def test_negative_and_300_digit_numbers_are_clamped(clock: FakeClock) -> None:
    item = {"type": "track", "name": "t", "duration_ms": int("9" * 300)}
    raw = _playing(item, progress_ms=-5)
    np = await client_for(answering_raw(200, raw), clock).currently_playing("at")
    assert np.item is not None and np.item.duration_ms == bounds.MAX_DURATION_MS
    assert np.progress_ms == 0
    raw = _playing({"type": "track", "name": "t", "duration_ms": 1000}, progress_ms=10**300)
    np = await client_for(answering_raw(200, raw), clock).currently_playing("at")
    assert np.progress_ms == 1000


@pytest.mark.parametrize(
    "raw",
    [
        b'{"is_playing": true, "progress_ms": ' + b"9" * 5000 + b"}",  # past the int parser
        _playing({"type": "track", "name": 42}),
        _playing({"type": "track", "name": "t", "duration_ms": "long"}),
        _playing({"type": "track", "name": "t", "album": {"name": ["x"]}}),
    ],
)
async def test_a_field_no_bound_can_read_is_a_bad_response(clock: FakeClock, raw: bytes) -> None:
    with pytest.raises(BadResponse):
        await client_for(answering_raw(200, raw), clock).currently_playing("at")


async def test_links_that_are_not_https_or_too_long_are_dropped(clock: FakeClock) -> None:
    item = {
        "type": "track",
        "name": "t",
        "external_urls": {"spotify": "javascript:alert(1)"},
        "album": {"images": [{"url": "https://i.scdn.co/" + "a" * 5000, "width": 640}]},
    }
    np = await client_for(answering_raw(200, _playing(item)), clock).currently_playing("at")
    assert np.item is not None
    assert np.item.url is None
    assert np.item.image_url is None


async def test_retry_after_as_an_http_date_is_read(
    sim: Simulator, http: httpx.AsyncClient, clock: FakeClock, access: str
) -> None:
    """The simulator's 429 with an HTTP-date Retry-After (and Date) reads as the same seconds."""
    sim.limits.configure(window_calls=1, daily_quota=None)
    sim.limits.retry_after_dates = True
    client = client_for(http, clock)
    await client.currently_playing(access)
    with pytest.raises(RateLimited) as limited:
        await client.currently_playing(access)
    assert limited.value.retry_after == 30
