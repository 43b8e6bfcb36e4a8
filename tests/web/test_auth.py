"""The whole connect flow in-process against the simulator: login, callback, cookies, logout."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from harness.app import ORIGIN, Env, make_settings
from harness.fuzz import (
    FUZZ,
    SESSION,
    Fuzz,
    assert_sane,
    describe,
    param_text,
    query_pairs,
)
from harness.helpers import consent
from hypothesis import given
from hypothesis import strategies as st

from nowplaying.sources.spotify.oauth import pkce_challenge
from nowplaying.store import AccountStatus
from nowplaying.web.sessions import Sessions

pytestmark = pytest.mark.anyio


async def test_login_redirects_to_spotify_with_state_and_pkce(env: Env) -> None:
    """/login sends the browser to /authorize with the least scope, a state and S256 PKCE."""
    response = await env.client.get("/login")
    assert response.status_code == 302
    url = urlsplit(response.headers["location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == "http://sim.test/authorize"
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert q["client_id"] == "cid"
    assert q["response_type"] == "code"
    assert q["redirect_uri"] == f"{ORIGIN}/callback"
    assert q["scope"] == "user-read-currently-playing"
    assert q["code_challenge_method"] == "S256"
    assert len(q["code_challenge"]) == 43
    assert len(q["state"]) >= 32
    assert "client_secret" not in response.headers["location"]
    assert "np_login" in response.headers["set-cookie"]


async def test_each_login_gets_a_fresh_state(env: Env) -> None:
    """Two logins never share a state or a challenge."""
    a = parse_qs(urlsplit((await env.client.get("/login")).headers["location"]).query)
    b = parse_qs(urlsplit((await env.client.get("/login")).headers["location"]).query)
    assert a["state"] != b["state"]
    assert a["code_challenge"] != b["code_challenge"]


async def test_redirect_uri_ignores_host_headers(env: Env) -> None:
    """The redirect URI comes from settings, never from Host or X-Forwarded-Host."""
    # (Host: evil.test is refused outright: test_security's test_unknown_hosts_are_refused.)
    response = await env.client.get(
        "/login", headers={"Host": "np.test:8443", "X-Forwarded-Host": "evil.test"}
    )
    q = parse_qs(urlsplit(response.headers["location"]).query)
    assert q["redirect_uri"] == [f"{ORIGIN}/callback"]


async def test_pkce_verifier_is_sent_at_exchange(env: Env) -> None:
    """The stored verifier matches the challenge sent to /authorize (the simulator checks it)."""
    response = await env.client.get("/login")
    q = {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}
    login = await env.services.runtime.store.take_login(q["state"])
    assert login is not None
    assert pkce_challenge(login.code_verifier) == q["code_challenge"]


async def test_full_flow_connects_and_sets_a_safe_cookie(env: Env) -> None:
    """Agree → /callback → 303 to / with an HttpOnly, Secure, Lax, __Host- session cookie."""
    response = await env.connect()
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert response.headers["referrer-policy"] == "no-referrer"
    cookies = response.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("__Host-np_session="))
    flags = {part.strip().lower() for part in session.split(";")[1:]}
    assert {"httponly", "secure", "samesite=lax", "path=/"} <= flags
    assert not any(f.startswith("domain") for f in flags)
    value = session.split(";")[0].split("=", 1)[1]
    assert len(value) >= 43  # 256-bit id + signature
    assert env.sim.calls["token:authorization_code"] == 1
    home = await env.client.get("/")
    assert "Demo Listener" in home.text
    assert "Disconnect" in home.text


async def test_cookie_holds_no_token(connected: Env) -> None:
    """Nothing the browser holds contains a Spotify token."""
    account = await connected.services.runtime.store.get_account("demo")
    assert account is not None
    token = await connected.services.runtime.tokens.token("demo")
    for cookie in connected.client.cookies.jar:
        assert account.refresh_token not in (cookie.value or "")
        assert token.access_token not in (cookie.value or "")


async def test_refresh_token_is_encrypted_at_rest(connected: Env) -> None:
    """The SQLite file holds the refresh token only as ciphertext."""
    account = await connected.services.runtime.store.get_account("demo")
    assert account is not None
    path = connected.services.runtime.settings.sqlite_path
    assert path is not None
    with sqlite3.connect(path) as db:
        (stored,) = db.execute("SELECT secret FROM sources").fetchone()
    assert stored != account.refresh_token
    assert account.refresh_token not in stored


async def test_session_cookie_on_plain_http_has_no_host_prefix(env: Env, tmp_path: Path) -> None:
    """Over http (loopback) the cookie is still Secure and HttpOnly but without __Host-."""
    assert not make_settings(
        tmp_path, spotify_redirect_uri="http://127.0.0.1:8000/callback"
    ).secure_cookies_host_prefix
    assert make_settings(tmp_path).secure_cookies_host_prefix
    sessions = Sessions(
        env.services.runtime.store,
        env.clock,
        secret="k" * 40,
        secure_prefix=False,
        idle_seconds=10,
        max_seconds=100,
    )
    assert sessions.names.session == "np_session"


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?code=abc",
        "?code=abc&state=unknown-state",
        "?state=" + "x" * 500,
    ],
)
async def test_bad_state_is_refused_without_token_request(env: Env, query: str) -> None:
    """Missing, unknown or absurd state: a 400 page and no token request."""
    await env.client.get("/login")
    response = await env.client.get(f"/callback{query}")
    assert response.status_code == 400
    assert "text/html" in response.headers["content-type"]
    assert env.sim.calls["token"] == 0


async def test_reused_state_is_refused(env: Env) -> None:
    """A callback replayed with the same state is refused (single use)."""
    login = await env.client.get("/login")
    redirect = await consent(env.sim_http, login.headers["location"])
    target = urlsplit(redirect.headers["location"])
    first = await env.client.get(f"/callback?{target.query}")
    assert first.status_code == 303
    calls = env.sim.calls["token"]
    again = await env.client.get(f"/callback?{target.query}")
    assert again.status_code == 400
    assert env.sim.calls["token"] == calls


async def test_state_from_another_browser_is_refused(env: Env) -> None:
    """A callback carrying a state started in another browser is refused (login CSRF)."""
    login = await env.client.get("/login")
    redirect = await consent(env.sim_http, login.headers["location"])
    target = urlsplit(redirect.headers["location"])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=env.app), base_url=ORIGIN
    ) as victim:
        await victim.get("/login")  # the victim has a login cookie of its own
        response = await victim.get(f"/callback?{target.query}")
    assert response.status_code == 400
    assert env.sim.calls["token"] == 0


async def test_expired_login_is_refused(env: Env) -> None:
    """A login older than 10 minutes cannot complete."""
    login = await env.client.get("/login")
    redirect = await consent(env.sim_http, login.headers["location"])
    await env.clock.advance(601)
    response = await env.client.get(f"/callback?{urlsplit(redirect.headers['location']).query}")
    assert response.status_code == 400
    assert env.sim.calls["token"] == 0


async def test_cancel_shows_a_friendly_page(env: Env) -> None:
    """Cancel on the consent page → a 4xx page saying nothing was stored."""
    login = await env.client.get("/login")
    redirect = await consent(env.sim_http, login.headers["location"], decision="cancel")
    assert "error=access_denied" in redirect.headers["location"]
    response = await env.client.get(f"/callback?{urlsplit(redirect.headers['location']).query}")
    assert response.status_code == 403
    assert "chose not to connect" in response.text
    assert env.sim.calls["token"] == 0
    assert await env.services.runtime.store.list_accounts() == []


async def test_missing_code_with_valid_state(env: Env) -> None:
    """A valid state but no code: 400 page, no token request."""
    login = await env.client.get("/login")
    state = parse_qs(urlsplit(login.headers["location"]).query)["state"][0]
    response = await env.client.get(f"/callback?state={state}")
    assert response.status_code == 400
    assert env.sim.calls["token"] == 0


async def test_invalid_code_is_a_friendly_400(env: Env) -> None:
    """A made-up code reaches Spotify once and is refused there: 400 page, nothing stored."""
    login = await env.client.get("/login")
    state = parse_qs(urlsplit(login.headers["location"]).query)["state"][0]
    response = await env.client.get(f"/callback?state={state}&code=made-up")
    assert response.status_code == 400
    assert env.sim.calls["token"] == 1
    assert await env.services.runtime.store.list_accounts() == []


async def test_spotify_down_at_exchange_is_503(env: Env) -> None:
    """The token endpoint failing at login gives a 503 page, never a 500."""
    env.sim.faults.add("token", status=503)
    response = await env.connect()
    assert response.status_code == 503


async def test_dev_mode_user_not_allowlisted(env: Env) -> None:
    """A user not on the app's allowlist gets a clear 403 page."""
    env.sim.faults.add("me", status=403, body="User not registered in the Developer Dashboard")
    response = await env.connect()
    assert response.status_code == 403
    assert "Developer Dashboard" in response.text


async def test_logout_forgets_everything(connected: Env) -> None:
    """POST /logout from our origin: account, tokens and session gone, cookie cleared."""
    response = await connected.client.post("/logout", headers={"Origin": ORIGIN})
    assert response.status_code == 303
    assert "__Host-np_session=" in response.headers["set-cookie"]
    assert await connected.services.runtime.store.get_account("demo") is None
    assert (await connected.client.get("/api/spotify")).status_code == 401
    assert "Connect Spotify" in (await connected.client.get("/")).text


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.test"}, {"Referer": "https://evil.test/page"}, {}],
)
async def test_cross_site_logout_is_refused(connected: Env, headers: dict[str, str]) -> None:
    """Another site's Origin (or Referer, or neither) cannot log the user out."""
    response = await connected.client.post("/logout", headers=headers)
    assert response.status_code == 403
    assert await connected.services.runtime.store.get_account("demo") is not None


async def test_logout_with_same_origin_referer(connected: Env) -> None:
    """Lacking Origin, a same-origin Referer is accepted."""
    response = await connected.client.post("/logout", headers={"Referer": f"{ORIGIN}/"})
    assert response.status_code == 303


async def test_session_id_rotates_at_login(connected: Env) -> None:
    """Logging in again issues a new session id and ends the old one (no fixation)."""
    old = connected.client.cookies.get("__Host-np_session")
    await connected.connect()
    new = connected.client.cookies.get("__Host-np_session")
    assert old and new and old != new
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=connected.app), base_url=ORIGIN
    ) as other:
        other.cookies.set("__Host-np_session", old)
        assert (await other.get("/api/spotify")).status_code == 401


@pytest.mark.parametrize("mangle", ["truncate", "tamper", "garbage", "huge"])
async def test_forged_cookies_are_anonymous(connected: Env, mangle: str) -> None:
    """Truncated, tampered or garbage cookies are simply anonymous: 401, never 500."""
    value = connected.client.cookies.get("__Host-np_session") or ""
    forged = {
        "truncate": value[:-5],
        "tamper": ("A" if value[0] != "A" else "B") + value[1:],
        "garbage": "not.a-cookie",
        "huge": "x" * 5000,
    }[mangle]
    connected.client.cookies.set("__Host-np_session", forged)
    response = await connected.client.get("/api/spotify")
    assert response.status_code == 401
    assert response.json() == {"error": "not_connected"}


async def test_idle_session_expires(connected: Env) -> None:
    """A session unused for longer than the idle lifetime is ended server side."""
    idle = connected.services.runtime.settings.nowplaying_session_idle_seconds
    await connected.clock.advance(idle + 1)
    assert (await connected.client.get("/api/spotify")).status_code == 401


async def test_reconnect_keeps_one_account(connected: Env) -> None:
    """Connecting the same Spotify user again updates the account, it does not duplicate it."""
    await connected.connect()
    assert len(await connected.services.runtime.store.list_accounts()) == 1


async def test_pages_carry_security_headers(env: Env) -> None:
    """Pages have a strict CSP (no inline script), nosniff and a referrer policy."""
    response = await env.client.get("/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"]
    assert "<script>" not in response.text


async def test_account_status_after_revocation(connected: Env) -> None:
    """A revoked grant marks the account and the home page offers to reconnect."""
    connected.sim.revoke("demo")
    connected.services.runtime.tokens.forget("demo")
    response = await connected.client.get("/api/spotify")
    assert response.status_code == 401
    assert response.json() == {"error": "reconnect_required"}
    account = await connected.services.runtime.store.get_account("demo")
    assert account is not None and account.status is AccountStatus.RECONNECT_REQUIRED
    assert "Reconnect Spotify" in (await connected.client.get("/")).text
    # Reconnecting brings the account back.
    await connected.connect()
    assert (await connected.client.get("/api/spotify")).status_code == 200


@FUZZ
@given(
    fields=st.fixed_dictionaries(
        {
            "state": st.none() | param_text,
            "code": st.none() | param_text,
            "error": st.none() | st.sampled_from(["access_denied", ""]) | param_text,
        }
    ),
    extra=query_pairs,
    real_state=st.booleans(),
    repeat=st.booleans(),
)
async def test_callback_query_never_500(
    fuzz: Fuzz,
    fields: dict[str, str | None],
    extra: list[tuple[str, str]],
    real_state: bool,
    repeat: bool,
) -> None:
    """Any /callback query: a 400/403 page, no session, and no token request without a state."""
    env, browser = fuzz.env, fuzz.anon
    pairs: list[tuple[str, str]] = []
    if real_state:
        login = await browser.get("/login")
        pairs.append(("state", dict(httpx.URL(login.headers["location"]).params)["state"]))
    for key, value in fields.items():
        if value is not None and not (real_state and key == "state"):
            pairs += [(key, value)] * (2 if repeat else 1)
    pairs += extra
    before = env.sim.calls["token"]
    response = await browser.get("/callback?" + urlencode(pairs))
    assert_sane(response, json_route=False)
    assert response.status_code in (400, 403), describe(response)
    assert SESSION not in response.headers.get("set-cookie", "")
    if not real_state:
        assert env.sim.calls["token"] == before


async def test_database_down_at_callback_writes_nothing(probed: Env) -> None:
    """The store failing during the callback: 503, and no half-written account or session."""
    env = probed
    login = await env.client.get("/login")
    outage = env.probe
    redirect = await consent(env.sim_http, login.headers["location"])
    outage.down = True
    response = await env.client.get(redirect.headers["location"].replace("https://np.test", ""))
    assert response.status_code == 503
    outage.down = False
    assert await env.services.runtime.store.list_accounts() == []
    assert "np_session" not in response.headers.get("set-cookie", "")
