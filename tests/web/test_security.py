"""Security properties, each a test that fails if the property breaks.

Some properties were already tested elsewhere; this module covers the gaps. Where each lives:

=========================================  =====================================================
property                                   tests
=========================================  =====================================================
secrets never leak (logs, responses,       ``test_no_secret_leaks_across_a_full_run`` (here);
URLs, database file)                       test_auth: ``test_cookie_holds_no_token``,
                                           ``test_refresh_token_is_encrypted_at_rest``
state single-use                           test_auth: ``test_reused_state_is_refused``,
                                           ``test_expired_login_is_refused``
state browser-bound                        test_auth: ``test_state_from_another_browser_is_
                                           refused``; here: ``test_callback_needs_the_login_
                                           cookie_and_clears_it``; test_sessions: cookie fuzz
PKCE on every login                        test_auth: ``test_login_redirects_to_spotify_
                                           with_state_and_pkce``, ``test_pkce_verifier_is_sent_
                                           at_exchange``; here: ``test_every_login_uses_pkce_
                                           end_to_end``
redirect_uri never from Host /             test_auth: ``test_redirect_uri_ignores_host_
X-Forwarded-Host                           headers`` (/login); here: ``test_code_exchange_
                                           redirect_uri_ignores_host_headers``
session id rotated at login                test_auth: ``test_session_id_rotates_at_login``;
                                           here: ``test_planted_session_cookie_is_ended_at_login``
forged / truncated / tampered cookies      test_auth: ``test_forged_cookies_are_anonymous``;
anonymous                                  here: ``test_cookies_that_are_no_live_session_are_
                                           anonymous``; test_sessions: ``test_cookies_never_500_
                                           and_never_authenticate``
idle and absolute lifetimes, server side   test_auth: ``test_idle_session_expires``; here:
                                           ``test_idle_expiry_ends_the_session_server_side``,
                                           ``test_activity_never_outlives_the_absolute_lifetime``
logout purges account, sessions, token,    test_auth: ``test_logout_forgets_everything``;
live state                                 here: ``test_logout_purges_everything_everywhere``
per-user responses private, no-store       test_api: ``test_not_connected``, ``api()``;
                                           here: ``test_per_user_responses_are_private_no_store``
no open redirect                           test_public: ``test_open_redirects_only_to_open_
                                           spotify``; test_auth: ``test_full_flow_connects_
                                           and_sets_a_safe_cookie`` (Location ``/``); here:
                                           ``test_login_ignores_redirect_parameters``,
                                           ``test_callback_redirects_only_home``,
                                           ``test_open_never_leaves_open_spotify``;
                                           test_auth: callback fuzz (never a redirect)
no URL built from the Host header;         here: ``test_unknown_hosts_are_refused``,
unknown hosts refused                      ``test_trailing_slash_is_a_404_never_a_redirect``,
                                           ``test_every_redirect_is_relative_or_fixed``;
                                           test_public: ``test_public_ids_never_500``;
                                           test_app: ``test_headers_never_500`` (Host fuzz)
=========================================  =====================================================
"""

from __future__ import annotations

import copy
import json
import logging
from collections import Counter
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from harness.app import ORIGIN, SAME, SECRET_KEY, Env, make_settings, open_env
from harness.fuzz import NAMES, VALUES
from harness.helpers import connect, consent, fixture_json
from harness.sse import SSEReader
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response

from nowplaying.clock import FakeClock
from nowplaying.crypto import Signer, fingerprint
from nowplaying.sources.spotify.grants import AccountGone
from nowplaying.sources.spotify.oauth import pkce_challenge
from nowplaying.store import AccountStatus
from nowplaying.web import create_app
from nowplaying.web.edge import Edge
from nowplaying.web.security import (
    HOST_VERDICTS,
    JSON_CSP,
    PAGE_CSP,
    TrustedHosts,
    host_name,
    with_security_headers,
)

pytestmark = pytest.mark.anyio

SESSION = "__Host-np_session"
LOGIN = "__Host-np_login"
CLIENT_SECRET = "csecret-for-tests"


def session_id(cookie_value: str) -> str:
    """The secret part of a signed cookie value (``id.signature``)."""
    return cookie_value.rpartition(".")[0]


def browser(env: Env, **kwargs: Any) -> httpx.AsyncClient:
    """Another browser on the same app."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=env.app, **kwargs), base_url=ORIGIN)


def token_forms(env: Env) -> list[dict[str, str]]:
    """Start recording the form of every request the app makes to Spotify's token endpoint."""
    forms: list[dict[str, str]] = []

    async def record(request: httpx.Request) -> None:
        if request.url.path == "/api/token":
            forms.append({k: v[0] for k, v in parse_qs(request.content.decode()).items()})

    env.sim_http.event_hooks = {"request": [record], "response": []}
    return forms


# -- secrets never leak ----------------------------------------------------------------------------


class Recorder:
    """Everything the outside world sees: our responses, the URLs requested, SSE data."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.issued: list[str] = []
        """Every access and refresh token Spotify (the simulator) handed out."""
        self.cookie_secrets: list[str] = []

    async def our_request(self, request: httpx.Request) -> None:
        self.seen.append(("URL requested of the app", str(request.url)))
        for name, value in request.headers.items():
            if name != "cookie":  # the browser sending its cookie back is the point of it
                self.seen.append((f"request header {name}", value))

    async def our_response(self, response: httpx.Response) -> None:
        await response.aread()
        where = f"{response.request.method} {response.request.url.path}"
        for name, value in response.headers.multi_items():
            shown = value
            if name == "set-cookie" and value.startswith((f"{SESSION}=", f"{LOGIN}=")):
                cookie, _, shown = value.partition(";")  # it may hold its own id, nothing else
                secret = session_id(cookie.partition("=")[2].strip('"'))
                if secret:
                    self.cookie_secrets.append(secret)
            self.seen.append((f"{where} header {name}", shown))
        self.seen.append((f"{where} body", response.text))

    async def outbound_request(self, request: httpx.Request) -> None:
        self.seen.append(("URL requested of Spotify", str(request.url)))

    async def outbound_response(self, response: httpx.Response) -> None:
        if response.request.url.path == "/api/token" and response.status_code == 200:
            await response.aread()
            body = response.json()
            self.issued += [body[k] for k in ("access_token", "refresh_token") if body.get(k)]

    def sse(self, reader: SSEReader) -> None:
        self.seen += [
            (f"SSE {reader.path} header {k}", v) for k, v in reader.response_headers.items()
        ]
        self.seen += [(f"SSE {reader.path} event", json.dumps(e.data)) for e in reader.events]


def database_bytes(env: Env) -> bytes:
    path = env.services.runtime.settings.sqlite_path
    assert path is not None
    files = [path, Path(f"{path}-wal")]
    return b"".join(p.read_bytes() for p in files if p.exists())


async def test_no_secret_leaks_across_a_full_run(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Tokens, client secret, secret key, session ids: in no log, response, URL or DB byte."""
    caplog.set_level(logging.DEBUG)
    rec = Recorder()
    env.client.event_hooks = {"request": [rec.our_request], "response": [rec.our_response]}
    env.sim_http.event_hooks = {
        "request": [rec.outbound_request],
        "response": [rec.outbound_response],
    }
    env.sim.set_refresh_mode("rotate")  # refreshes hand out new refresh tokens too
    client, player, hub = env.client, env.sim.player("demo"), env.services.runtime.hub
    cookie = {"Cookie": ""}

    async def watch(path: str, count: int, change: Any = None) -> None:
        async with SSEReader(env.app, path, cookie) as sse:
            await sse.wait_for(1)
            if change is not None:
                change()
                await env.clock.advance(5.5)
            await sse.wait_for(count)
        rec.sse(sse)

    assert (await env.connect()).status_code == 303
    cookie["Cookie"] = f"{SESSION}={client.cookies.get(SESSION)}"
    player.play(0)
    await client.get("/api/spotify")
    await client.get("/api/account")
    await client.get("/")
    public_id = (await client.post("/api/account/publish", headers=SAME)).json()["publicId"]
    for suffix in (".json", ".svg", "", "/open"):
        await client.get(f"/p/{public_id}{suffix}")
    await client.get("/static/widget.js")
    await watch("/api/spotify/events", 2, player.play_ad)
    await watch(f"/p/{public_id}/events", 1)

    # An access token expires and is refreshed (a rotated refresh token comes back).
    await env.clock.advance(3600)
    await hub.forget("demo")
    assert (await client.get("/api/spotify")).status_code == 200
    await client.post("/api/account/settings", json={"lastPlayed": True}, headers=SAME)
    public_id = (await client.post("/api/account/rotate", headers=SAME)).json()["publicId"]
    await client.get(f"/p/{public_id}.json")
    at_rest = database_bytes(env)

    # Spotify failing: 5xx on the API, then on the token endpoint, then at a login.
    env.sim.faults.add("currently-playing", status=502, times=5)
    await hub.forget("demo")
    await client.get("/api/spotify")
    await client.get(f"/p/{public_id}.svg")
    env.sim.faults.clear()
    env.sim.expire_access_tokens("demo")
    env.services.runtime.tokens.forget("demo")
    env.sim.faults.add("token", status=500, times=3)
    await hub.forget("demo")
    await client.get("/api/spotify")
    env.sim.faults.clear()
    env.sim.faults.add("token", status=503)
    assert (await env.connect()).status_code == 503

    # The grant revoked: reconnect states everywhere, then connecting again.
    env.sim.revoke("demo")
    env.services.runtime.tokens.forget("demo")
    await hub.forget("demo")
    for path in (
        "/api/spotify",
        "/api/account",
        "/",
        f"/p/{public_id}.json",
        f"/p/{public_id}.svg",
    ):
        await client.get(path)
    assert (await env.connect()).status_code == 303
    await client.get("/api/spotify")
    at_rest += database_bytes(env)
    assert (await client.post("/logout", headers=SAME)).status_code == 303
    at_rest += database_bytes(env)

    secrets = {f"token #{i}": t for i, t in enumerate(rec.issued)}
    secrets |= {f"cookie id #{i}": s for i, s in enumerate(rec.cookie_secrets)}
    secrets |= {"client secret": CLIENT_SECRET, "secret key": SECRET_KEY}
    assert len(rec.issued) >= 6 and len(rec.cookie_secrets) >= 4  # the run did what it says
    assert any("Demo Listener" in text for _, text in rec.seen)
    logs = [("log " + r.name, r.getMessage()) for r in caplog.records]
    logs.append(("formatted logs", caplog.text))
    assert len(logs) > 10
    leaks = [
        f"{name} in {where}"
        for name, secret in secrets.items()
        for where, text in [*rec.seen, *logs]
        if secret in text
    ]
    assert not leaks, "\n".join(leaks)
    assert b"Demo Listener" in at_rest  # the files were read
    stored = [name for name, secret in secrets.items() if secret.encode() in at_rest]
    assert not stored, stored


# -- login: state, browser binding, PKCE, redirect URI ---------------------------------------------


async def test_callback_needs_the_login_cookie_and_clears_it(env: Env) -> None:
    """Without the browser's login cookie a valid state is refused; after success it is cleared."""
    login = await env.client.get("/login")
    redirect = await consent(env.sim_http, login.headers["location"])
    query = urlsplit(redirect.headers["location"]).query
    async with browser(env) as stranger:
        refused = await stranger.get(f"/callback?{query}")
    assert refused.status_code == 400
    assert env.sim.calls["token"] == 0

    done = await env.connect()
    assert done.status_code == 303
    cleared = [c for c in done.headers.get_list("set-cookie") if c.startswith(f"{LOGIN}=")]
    assert cleared and "max-age=0" in cleared[0].lower()


async def test_every_login_uses_pkce_end_to_end(env: Env) -> None:
    """Each login sends an S256 challenge and redeems its code with the matching verifier."""
    forms = token_forms(env)
    challenges = []
    for path in ("/login", "/login?with=recently-played", "/login"):
        login = await env.client.get(path)
        q = {k: v[0] for k, v in parse_qs(urlsplit(login.headers["location"]).query).items()}
        assert q["code_challenge_method"] == "S256"
        challenges.append(q["code_challenge"])
        redirect = await consent(env.sim_http, login.headers["location"])
        callback = await env.client.get(f"/callback?{urlsplit(redirect.headers['location']).query}")
        assert callback.status_code == 303
    exchanges = [f for f in forms if f.get("grant_type") == "authorization_code"]
    assert [pkce_challenge(f["code_verifier"]) for f in exchanges] == challenges
    assert len({f["code_verifier"] for f in exchanges}) == 3
    assert all(43 <= len(f["code_verifier"]) <= 128 for f in exchanges)


async def test_code_exchange_redirect_uri_ignores_host_headers(env: Env) -> None:
    """The redirect_uri redeemed at the token endpoint is the configured one, whatever Host says."""
    forms = token_forms(env)
    # Another Host is refused outright (test_unknown_hosts_are_refused); our name on another
    # port, or a forwarded host, changes nothing either.
    hostile = {"Host": "NP.TEST:8443", "X-Forwarded-Host": "evil.test", "X-Forwarded-Proto": "http"}
    login = await env.client.get("/login", headers=hostile)
    redirect = await consent(env.sim_http, login.headers["location"])
    query = urlsplit(redirect.headers["location"]).query
    response = await env.client.get(f"/callback?{query}", headers=hostile)
    assert response.status_code == 303
    assert [f["redirect_uri"] for f in forms] == [f"{ORIGIN}/callback"]


# -- sessions --------------------------------------------------------------------------------------


async def test_planted_session_cookie_is_ended_at_login(env: Env) -> None:
    """An attacker's own session cookie planted in a victim's browser opens nothing after login."""
    env.sim.add_user("mallory", "Mallory")
    async with browser(env) as attacker, browser(env) as victim:
        assert (await connect(attacker, env.sim_http, user="mallory")).status_code == 303
        planted = attacker.cookies.get(SESSION) or ""
        victim.cookies.set(SESSION, planted, domain="np.test")
        env.sim_http.cookies.clear()  # the victim is signed in to Spotify as demo, not mallory
        assert (await connect(victim, env.sim_http, user="demo")).status_code == 303
        assert victim.cookies.get(SESSION) not in (None, planted)
        assert (await victim.get("/api/account")).json()["displayName"] == "Demo Listener"
        assert (await attacker.get("/api/account")).status_code == 401
        await env.clock.advance(3)  # past the session lookup cache
        assert (await attacker.get("/api/spotify")).status_code == 401


@pytest.mark.parametrize(
    "forge",
    [
        "login cookie as session",
        "signed with another key",
        "signed unknown id",
        "stored key as id",
        "without __Host- prefix",
        "of a deleted account",
    ],
)
async def test_cookies_that_are_no_live_session_are_anonymous(connected: Env, forge: str) -> None:
    """Validly shaped cookies that are not a live session of ours: anonymous everywhere."""
    real = connected.client.cookies.get(SESSION) or ""
    sid = session_id(real)
    ours = Signer(SECRET_KEY, "session-cookie")
    login = await connected.client.get("/login")
    name, value = SESSION, ""
    if forge == "login cookie as session":
        value = login.cookies[LOGIN]
    elif forge == "signed with another key":
        value = Signer("another-deployment-secret-key-0123456789abc", "session-cookie").sign(sid)
    elif forge == "signed unknown id":
        value = ours.sign("A" * 43)
    elif forge == "stored key as id":  # what a copy of the database holds
        value = ours.sign(fingerprint(sid))
    elif forge == "without __Host- prefix":  # e.g. planted by a sibling subdomain
        name, value = "np_session", real
    else:
        await connected.services.runtime.store.delete_account("demo")
        value = real
    async with browser(connected) as other:
        other.cookies.set(name, value)
        for path in ("/api/spotify", "/api/account"):
            response = await other.get(path)
            assert response.status_code == 401, (path, response.text)
        assert "Demo Listener" not in (await other.get("/")).text
        published = await other.post("/api/account/publish", headers=SAME)
        assert published.status_code == 401


async def test_the_session_memo_is_per_cookie_header_and_ends_with_the_session(
    connected: Env,
) -> None:
    """The hot path remembers a verified answer under the Cookie header as sent: the same
    session in another header is verified on its own, a tampered one next to a remembered one
    is refused, and ending the session from one header forgets it under every header at once
    (no CACHE_SECONDS grace on this instance)."""
    real = connected.client.cookies.get(SESSION) or ""
    sessions = connected.services.sessions

    def request(cookie: str) -> Request:
        return Request({"type": "http", "headers": [(b"cookie", cookie.encode())]})

    plain, other = f"{SESSION}={real}", f"theme=dark; {SESSION}={real}"
    assert await sessions.account(request(plain)) == ("demo", AccountStatus.ACTIVE)
    assert await sessions.account(request(other)) == ("demo", AccountStatus.ACTIVE)
    assert await sessions.account(request(f"{plain}x")) is None
    assert await sessions.account(request(f"theme=dark; {SESSION}={real[:-1]}")) is None
    assert await sessions.account(request("theme=dark")) is None
    await sessions.end(request(other), Response())
    assert await sessions.account(request(plain)) is None
    assert await sessions.account(request(other)) is None


async def test_idle_expiry_ends_the_session_server_side(connected: Env) -> None:
    """Past the idle lifetime the session row is deleted; the browser's cookie is worthless."""
    sid = session_id(connected.client.cookies.get(SESSION) or "")
    store = connected.services.runtime.store
    assert await store.get_session(fingerprint(sid)) is not None
    idle = connected.services.sessions.idle_seconds
    await connected.clock.advance(idle - 60)
    assert (await connected.client.get("/api/account")).status_code == 200  # activity resets it
    await connected.clock.advance(idle - 60)
    assert (await connected.client.get("/api/account")).status_code == 200
    await connected.clock.advance(idle + 1)
    assert (await connected.client.get("/api/account")).status_code == 401
    assert await store.get_session(fingerprint(sid)) is None
    assert (await connected.client.get("/api/spotify")).status_code == 401


async def test_activity_never_outlives_the_absolute_lifetime(connected: Env) -> None:
    """A session used every six hours still ends at its absolute maximum age (90 days)."""
    sessions = connected.services.sessions
    assert (
        sessions.max_seconds == connected.services.runtime.settings.nowplaying_session_max_seconds
    )
    step = 6 * 3600
    alive = 0
    while alive + step < sessions.max_seconds:
        await connected.clock.advance(step)
        alive += step
        response = await connected.client.get("/api/account")
        assert response.status_code == 200, f"ended early, after {alive / 86400:.2f} days"
    await connected.clock.advance(sessions.max_seconds - alive + 1)  # well within idle
    assert (await connected.client.get("/api/account")).status_code == 401
    assert (await connected.client.get("/api/spotify")).status_code == 401


async def test_logout_purges_everything_everywhere(connected: Env) -> None:
    """Logout: account row, every session (other browsers too), cached token and live state."""
    svc = connected.services
    public_id = (await connected.client.post("/api/account/publish", headers=SAME)).json()[
        "publicId"
    ]
    async with browser(connected) as laptop:
        assert (await connect(laptop, connected.sim_http)).status_code == 303
        sids = [session_id(c.cookies.get(SESSION) or "") for c in (connected.client, laptop)]
        assert (await laptop.get("/api/spotify")).status_code == 200
        assert svc.runtime.hub.peek("demo") is not None
        assert (await svc.runtime.tokens.token("demo")).access_token
        cookie = {"Cookie": f"{SESSION}={laptop.cookies.get(SESSION)}"}
        async with SSEReader(connected.app, "/api/spotify/events", cookie) as viewer:
            await viewer.wait_for(1)
            logout = await connected.client.post("/logout", headers=SAME)
            assert logout.status_code == 303
            await viewer.wait_for(2)
        assert viewer.events[-1].data == {"error": "reconnect_required"}
        for path in ("/api/spotify", "/api/account"):
            assert (await laptop.get(path)).status_code == 401
    assert await svc.runtime.store.get_account("demo") is None
    for sid in sids:
        assert await svc.runtime.store.get_session(fingerprint(sid)) is None
    # The live state keeps nothing of what played (viewers that stay see the reconnect state).
    left = svc.runtime.hub.peek("demo")
    assert left is None or (left.playing is None and left.grant_gone), left
    upstream = (connected.sim.calls["currently-playing"], connected.sim.calls["token"])
    await connected.clock.advance(30)
    assert (connected.sim.calls["currently-playing"], connected.sim.calls["token"]) == upstream
    with pytest.raises(AccountGone):
        await svc.runtime.tokens.token("demo")  # nothing cached, and nothing left to refresh with
    assert (await connected.client.get(f"/p/{public_id}.json")).status_code == 404


async def test_per_user_responses_are_private_no_store(connected: Env) -> None:
    """/, /api/spotify, /api/account (and the owner's stream and POSTs): private, no-store."""
    owner = connected.client
    answers = [await owner.get(p) for p in ("/", "/api/spotify", "/api/account")]
    answers.append(await owner.post("/api/account/publish", headers=SAME))
    answers.append(await owner.post("/api/account/settings", json={"x": 1}, headers=SAME))
    connected.sim.faults.add("currently-playing", status=503, times=50)
    await connected.services.runtime.hub.forget("demo")
    answers.append(await owner.get("/api/spotify"))  # 503, nothing known
    connected.sim.faults.clear()
    async with browser(connected) as anonymous:
        answers += [await anonymous.get(p) for p in ("/", "/api/spotify", "/api/account")]
    assert {r.status_code for r in answers} >= {200, 400, 401, 503}
    for response in answers:
        assert response.headers["cache-control"] == "private, no-store", describe(response)
    cookie = {"Cookie": f"{SESSION}={owner.cookies.get(SESSION)}"}
    async with SSEReader(connected.app, "/api/spotify/events", cookie) as sse:
        await sse.wait_status()
    assert sse.response_headers["cache-control"] == "private, no-store"


def describe(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url.path} {response.status_code}"


# -- no open redirect ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "next=https://evil.test",
        "next=//evil.test/",
        "redirect_uri=https://evil.test/callback",
        "with=recently-played&next=https://evil.test&return_to=https://evil.test",
    ],
)
async def test_login_ignores_redirect_parameters(env: Env, query: str) -> None:
    """/login goes to Spotify's consent page with our redirect_uri, whatever the query asks."""
    response = await env.client.get(f"/login?{query}")
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert (location.scheme, location.netloc, location.path) == ("http", "sim.test", "/authorize")
    assert parse_qs(location.query)["redirect_uri"] == [f"{ORIGIN}/callback"]
    assert "evil" not in response.headers["location"]


async def test_callback_redirects_only_home(env: Env) -> None:
    """A successful callback carrying next/redirect parameters still goes to exactly ``/``."""
    login = await env.client.get("/login?next=https://evil.test")
    redirect = await consent(env.sim_http, login.headers["location"])
    query = urlsplit(redirect.headers["location"]).query
    response = await env.client.get(
        f"/callback?{query}&next=https://evil.test&redirect_uri=//evil.test&return_to=%2F%2Fevil"
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"


HOSTILE_URLS = st.one_of(
    st.builds(
        "{}{}".format,
        st.sampled_from(
            [
                "https://open.spotify.com",
                "https://open.spotify.com/",
                "https://open.spotify.com.",
                "https://open.spotify.com@",
                "https://open.spotify.com:",
                "http://open.spotify.com/",
                "//open.spotify.com/",
                "https:open.spotify.com/",
                "HTTPS://OPEN.SPOTIFY.COM/",
                "",
            ]
        ),
        st.text(max_size=40),
    ),
    st.text(max_size=60),
)


@pytest.fixture
def open_branches() -> Iterator[Counter[int]]:
    """Counts the statuses ``/open`` answered across a property's examples; at the end, both
    branches (302 to Spotify, 404 nowhere) must have run, or the property proved nothing."""
    reached: Counter[int] = Counter()
    yield reached
    assert reached[302] >= 1 and reached[404] >= 1, f"/open branches reached: {dict(reached)}"


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(url=HOSTILE_URLS)
# the 302 branch: URLs on open.spotify.com, as Spotify sends them and at the edges
@example(url="https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC")
@example(url="https://open.spotify.com/")
@example(url="https://open.spotify.com/episode/1?si=abc&utm_source=x")
# the 404 branch: look-alikes and smuggling
@example(url="https://open.spotify.com.evil.test/track/1")
@example(url="https://open.spotify.com@evil.test/")
@example(url="https://open.spotify.com/\\\\evil.test")
@example(url="https://open.spotify.com/\r\nLocation: https://evil.test/")
@example(url="https://open.spotify.com/%2F%2Fevil.test")
@example(url="//open.spotify.com/track/1")
@example(url="javascript:alert(1)")
async def test_open_never_leaves_open_spotify(
    connected: Env, open_branches: Counter[int], url: str
) -> None:
    """Whatever URL Spotify reports, /open redirects to https://open.spotify.com/ or nowhere."""
    published = await connected.client.post("/api/account/publish", headers=SAME)
    public_id = published.json()["publicId"]  # the same id every time
    item: dict[str, Any] = copy.deepcopy(fixture_json("currently-playing-track.json")["item"])
    item["external_urls"] = {"spotify": url}
    connected.sim.player("demo").set_playlist([item])
    await connected.services.runtime.hub.forget("demo")
    response = await connected.client.get(f"/p/{public_id}/open")
    assert response.status_code in (302, 404)
    open_branches[response.status_code] += 1
    if response.status_code == 302:
        location = response.headers["location"]
        parts = urlsplit(location)
        assert (parts.scheme, parts.netloc) == ("https", "open.spotify.com"), location
        assert location.startswith("https://open.spotify.com/")
        assert not any(c in location for c in "\\\r\n\t "), location


# -- the Host header -------------------------------------------------------------------------------

HOST_ROUTES = [
    ("GET", "/"),
    ("GET", "/login"),
    ("GET", "/callback?state=x&code=y"),
    ("POST", "/logout"),
    ("GET", "/api/spotify"),
    ("GET", "/api/spotify/"),
    ("GET", "/api/account"),
    ("POST", "/api/account/publish"),
    ("GET", "/p/0%2F"),
    ("GET", "/p/{id}.svg"),
    ("GET", "/p/{id}/open"),
    ("GET", "/openapi.json"),
    ("GET", "/static/page.css"),
]


@pytest.mark.parametrize(("method", "path"), HOST_ROUTES)
@pytest.mark.parametrize("host", ["evil.example", "np.test.evil.example", "[::1]", "", "np.test:x"])
async def test_unknown_hosts_are_refused(connected: Env, method: str, path: str, host: str) -> None:
    """Any Host that is not this site: 400 JSON on pages and APIs, no Location, no cookie."""
    public_id = (await connected.client.post("/api/account/publish", headers=SAME)).json()[
        "publicId"
    ]
    connected.sim.player("demo").play(0)
    response = await connected.client.request(
        method, path.replace("{id}", public_id), headers={"Host": host, **SAME}
    )
    assert response.status_code == 400, response.text
    assert response.json() == {"error": "bad_request", "message": "Unknown host."}
    assert "location" not in response.headers
    assert "set-cookie" not in response.headers
    assert (await connected.client.get("/api/account")).status_code == 200  # still logged in


@pytest.mark.parametrize("host", ["np.test", "NP.TEST", "np.test:8443", "np.test."])
async def test_our_name_on_any_port_or_case_is_served(connected: Env, host: str) -> None:
    """Host matching ignores the port and case (a proxy may use another port)."""
    response = await connected.client.get("/api/account", headers={"Host": host})
    assert response.status_code == 200, response.text


async def test_allowed_hosts_setting_adds_names(tmp_path: Path, clock: FakeClock) -> None:
    """NOWPLAYING_ALLOWED_HOSTS: extra names are served; others are still refused."""
    async with open_env(tmp_path, clock, nowplaying_allowed_hosts=["WWW.np.test"]) as env:
        assert (await env.client.get("/", headers={"Host": "www.np.test"})).status_code == 200
        assert (await env.client.get("/", headers={"Host": "np.test"})).status_code == 200
        assert (await env.client.get("/", headers={"Host": "evil.example"})).status_code == 400


@pytest.mark.parametrize("host", ["10.0.0.7", "10.0.0.7:8000", "evil.example", ""])
async def test_healthz_answers_any_host(env: Env, host: str) -> None:
    """Load balancers probe /healthz by IP: it answers whatever the Host."""
    response = await env.client.get("/healthz", headers={"Host": host})
    assert response.status_code == 200
    assert response.json()["ok"] is True


async def raw_get(
    env: Env, path: str, *, host: str | None, server: tuple[str, int] = ("np.test", 443)
) -> tuple[int, dict[str, str]]:
    """A GET as an ASGI server hands it over, path as is (httpx would resolve ``//x/``)."""
    sent: list[MutableMapping[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1" if host is not None else "1.0",
        "method": "GET",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [] if host is None else [(b"host", host.encode())],
        "server": server,
        "client": ("127.0.0.1", 50000),
    }

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await env.app(scope, receive, send)
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers


@pytest.mark.parametrize(("server", "status"), [(("np.test", 443), 401), (("10.1.1.1", 80), 400)])
async def test_a_request_without_host_is_checked_by_the_server_address(
    env: Env, server: tuple[str, int], status: int
) -> None:
    """HTTP/1.0 without Host: the server address (what a URL would be built from) is checked."""
    assert (await raw_get(env, "/api/spotify", host=None, server=server))[0] == status


def test_allowed_hosts_come_from_the_redirect_uri(tmp_path: Path) -> None:
    """The redirect URI's host; loopback names only in demo mode; never the empty name."""
    assert make_settings(tmp_path).allowed_hosts == {"np.test"}
    demo = make_settings(
        tmp_path, spotify_client_id="", spotify_redirect_uri="http://127.0.0.1:8000/callback"
    )
    assert demo.allowed_hosts == {"127.0.0.1", "localhost", "::1"}
    ipv6 = make_settings(tmp_path, spotify_redirect_uri="http://[::1]:8000/callback")
    assert ipv6.allowed_hosts == {"::1"}


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("np.test", "np.test"),
        ("NP.Test:443", "np.test"),
        ("np.test.", "np.test"),
        ("[::1]:8000", "::1"),
        ("127.0.0.1:9", "127.0.0.1"),
        ("", None),
        ("[", None),
        ("np.test:x", None),
        ("a:1:2", None),
        ("np.test:123456", None),
    ],
)
def test_host_name_parses_host_headers(header: str, name: str | None) -> None:
    assert host_name(header) == name


TRAILING = ["/p/0%2F", "/api/spotify/", "/api/account/", "/login/", "/p/{id}/"]


@pytest.mark.parametrize("path", TRAILING)
async def test_trailing_slash_is_a_404_never_a_redirect(connected: Env, path: str) -> None:
    """Starlette's trailing-slash redirect built its Location from Host: now a plain 404."""
    public_id = (await connected.client.post("/api/account/publish", headers=SAME)).json()[
        "publicId"
    ]
    path = path.replace("{id}", public_id)
    for host in ("np.test", "np.test:8443"):
        response = await connected.client.get(path, headers={"Host": host})
        assert response.status_code == 404, (host, response.status_code)
        assert "location" not in response.headers
    refused = await connected.client.get(path, headers={"Host": "evil.example"})
    assert refused.status_code == 400
    assert "location" not in refused.headers


@pytest.mark.parametrize("path", ["//evil.example/", "//evil.example", "/\\evil.example/"])
async def test_protocol_relative_paths_do_not_redirect(env: Env, path: str) -> None:
    """A path that a trailing-slash redirect would turn into ``//evil.example``: a 404."""
    status, headers = await raw_get(env, path, host="np.test")
    assert status == 404
    assert "location" not in headers


async def test_every_redirect_is_relative_or_fixed(env: Env) -> None:
    """The whole flow on our name at another port: each Location is ``/`` or a fixed host."""
    odd = {"Host": "np.test:8443"}
    login = await env.client.get("/login", headers=odd)
    redirect = await consent(env.sim_http, login.headers["location"])
    callback = await env.client.get(
        f"/callback?{urlsplit(redirect.headers['location']).query}", headers=odd
    )
    public_id = (await env.client.post("/api/account/publish", headers={**SAME, **odd})).json()[
        "publicId"
    ]
    env.sim.player("demo").play(0)
    await env.services.runtime.hub.forget("demo")
    opened = await env.client.get(f"/p/{public_id}/open", headers=odd)
    logout = await env.client.post("/logout", headers={**SAME, **odd})
    locations = [r.headers["location"] for r in (login, callback, opened, logout)]
    assert [r.status_code for r in (login, callback, opened, logout)] == [302, 303, 302, 303]
    assert [urlsplit(loc).netloc for loc in locations] == ["sim.test", "", "open.spotify.com", ""]
    assert locations[1] == locations[3] == "/"


async def test_demo_mode_serves_loopback_names_and_the_simulator_never_redirects_by_host(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Demo mode: 127.0.0.1 and localhost on any port are served; the mounted simulated Spotify
    does not turn a trailing slash into a redirect built from Host either."""
    settings = make_settings(
        tmp_path, spotify_client_id="", spotify_redirect_uri="http://127.0.0.1:8000/callback"
    )
    app = create_app(settings, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client,
    ):
        for host in ("127.0.0.1:8000", "localhost:6666", "[::1]:8000"):
            assert (await client.get("/", headers={"Host": host})).status_code == 200, host
        assert (await client.get("/", headers={"Host": "evil.example"})).status_code == 400
        slash = await client.get("/spotify-sim/authorize/", headers={"Host": "127.0.0.1:6666"})
        assert slash.status_code == 404
        assert "location" not in slash.headers


def _reference(raw: list[tuple[bytes, bytes]], exempt: bool) -> list[tuple[bytes, bytes]]:
    """What SecurityHeaders did before: ``MutableHeaders.setdefault``, one header at a time."""
    message = {"type": "http.response.start", "headers": list(raw)}
    headers = MutableHeaders(scope=message)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if not exempt:
        is_json = headers.get("content-type", "").startswith("application/json")
        csp = headers.setdefault("Content-Security-Policy", JSON_CSP if is_json else PAGE_CSP)
        if "frame-ancestors 'none'" in csp:
            headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    return headers.raw


@given(raw=st.lists(st.tuples(NAMES, VALUES), max_size=6), exempt=st.booleans())
@example(raw=[], exempt=False)  # a bare response: every header added
@example(raw=[(b"content-security-policy", b"frame-ancestors *")], exempt=False)  # an embed
@example(raw=[(b"content-security-policy", PAGE_CSP.encode())], exempt=False)  # XFO added
@example(raw=[(b"x-frame-options", b"x"), (b"x-frame-options", b"DENY")], exempt=True)
@example(raw=[(b"content-type", b"application/json")], exempt=False)  # the API's own policy
def test_security_headers_match_setdefault(raw: list[tuple[bytes, bytes]], exempt: bool) -> None:
    mine = list(raw)
    with_security_headers(mine, exempt)
    assert mine == _reference(raw, exempt)


async def test_json_answers_carry_the_json_policy_and_pages_the_page_policy(
    connected: Env,
) -> None:
    """A JSON document may load nothing (``default-src 'none'``), a page what it needs; both
    refuse framing (CSP and X-Frame-Options)."""
    for path in ("/api/spotify", "/api/account", "/api/nothing-here"):
        response = await connected.client.get(path)
        assert response.headers["content-type"] == "application/json", path
        assert response.headers["content-security-policy"] == JSON_CSP, path
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
    page = await connected.client.get("/")
    assert page.headers["content-security-policy"] == PAGE_CSP
    assert page.headers["x-frame-options"] == "DENY"


async def test_a_refused_host_stays_refused_and_verdicts_are_bounded(connected: Env) -> None:
    """The verdict per Host value is a memo: the same answers, and no more than HOST_VERDICTS."""
    for _ in range(2):
        assert (
            await connected.client.get("/api/spotify", headers={"Host": "evil.test"})
        ).status_code == 400
        assert (await connected.client.get("/api/spotify")).status_code == 200
    guard = _trusted_hosts(connected)
    for n in range(HOST_VERDICTS + 10):
        await connected.client.get("/healthz-nope", headers={"Host": f"h{n}.evil.test"})
    assert len(guard._verdicts) == HOST_VERDICTS
    assert (
        await connected.client.get("/api/spotify", headers={"Host": "h1.evil.test"})
    ).status_code == 400
    late = await connected.client.get("/api/spotify", headers={"Host": "late.evil.test"})
    assert late.status_code == 400  # past the bound: parsed each time, still refused


def _trusted_hosts(env: Env) -> TrustedHosts:
    app = env.app.middleware_stack
    while not isinstance(app, Edge):
        app = app.app  # type: ignore[union-attr]
    return app.hosts
