"""Connecting Last.fm and ListenBrainz: the flows over real HTTP to the simulated services (on
loopback sockets), sign-in without Spotify, linking to a signed-in widget, and every refusal."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from harness.app import LASTFM_KEY, ORIGIN, SAME, Env
from harness.fuzz import FUZZ, SESSION, Fuzz, assert_sane, describe, param_text, query_pairs
from harness.helpers import connect, lastfm_allow
from harness.live_server import free_port
from harness.servers import nowplaying_server, sign_in_with_lastfm
from harness.upstreams import (
    Upstreams,
    env_with_upstreams,
    served_upstreams,
)
from hypothesis import given
from hypothesis import strategies as st

from nowplaying.clock import FakeClock
from nowplaying.models import SourceKind
from nowplaying.store import Store

pytestmark = pytest.mark.anyio


@pytest.fixture
def up() -> Iterator[Upstreams]:
    with served_upstreams() as upstreams:
        yield upstreams


@pytest.fixture
async def app(tmp_path: Path, clock: FakeClock, up: Upstreams) -> AsyncIterator[Env]:
    async with env_with_upstreams(tmp_path, clock, up) as env:
        yield env


async def connect_with(client: httpx.AsyncClient, env: Env) -> httpx.Response:
    """Spotify's whole sign-in (the simulator's demo user) in the browser ``client``."""
    return await connect(client, env.sim_http)


def store(env: Env) -> Store:
    return env.services.runtime.store


async def lastfm_sign_in(
    env: Env, user: str, client: httpx.AsyncClient | None = None
) -> httpx.Response:
    """/login/lastfm, allow on Last.fm as ``user``, /callback/lastfm: the callback's answer."""
    browser = client or env.client
    login = await browser.get("/login/lastfm")
    assert login.status_code == 302, login.text
    back = await lastfm_allow(login.headers["location"], user)
    assert back.status_code == 302, back.text
    callback = urlsplit(back.headers["location"])
    assert f"{callback.scheme}://{callback.netloc}" == ORIGIN
    return await browser.get(f"{callback.path}?{callback.query}")


async def test_lastfm_login_sends_the_browser_to_lastfm_with_a_state_in_the_callback(
    app: Env, up: Upstreams
) -> None:
    response = await app.client.get("/login/lastfm")
    assert response.status_code == 302
    url = urlsplit(response.headers["location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{up.fm_url}/api/auth/"
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert q["api_key"] == LASTFM_KEY
    cb = urlsplit(q["cb"])
    assert f"{cb.scheme}://{cb.netloc}{cb.path}" == f"{ORIGIN}/callback/lastfm"
    assert len(parse_qs(cb.query)["state"][0]) >= 43
    assert response.headers["cache-control"] == "no-store"
    assert any(c.startswith("__Host-np_login=") for c in response.headers.get_list("set-cookie"))


async def test_signing_in_with_lastfm_makes_a_widget_without_spotify(
    app: Env, up: Upstreams, tmp_path: Path
) -> None:
    """No Spotify anywhere: Last.fm's name makes the widget ``lastfm:NAME``, the session key is
    sealed like a refresh token, and the owner is signed in to it."""
    up.fm.add_user("bob_fm")
    response = await lastfm_sign_in(app, "bob_fm")
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert up.fm.calls["auth.getsession"] == 1
    (widget,) = await store(app).list_accounts()
    assert (widget.id, widget.display_name, widget.spotify) == ("lastfm:bob_fm", "bob_fm", False)
    link = await store(app).get_source("lastfm:bob_fm", SourceKind.LASTFM)
    assert link is not None and link.user_name == "bob_fm"
    assert up.fm.sessions[link.secret] == "bob_fm"  # the session key Last.fm gave
    with sqlite3.connect(tmp_path / "nowplaying.sqlite3") as db:
        raw = repr(db.execute("SELECT * FROM sources").fetchall())
    db.close()
    assert link.secret not in raw
    page = await app.client.get("/")
    assert page.status_code == 200 and "bob_fm" in page.text
    assert "six months" not in page.text  # no Spotify grant to renew
    account = await app.client.get("/api/account")
    assert account.status_code == 200


async def test_signing_in_again_finds_the_same_widget(app: Env, up: Upstreams) -> None:
    """Another browser, the same Last.fm user: the widget it has, with the new session key."""
    up.fm.add_user("bob_fm")
    await lastfm_sign_in(app, "bob_fm")
    first = await store(app).get_source("lastfm:bob_fm", SourceKind.LASTFM)
    transport = httpx.ASGITransport(app=app.app)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as other:
        response = await lastfm_sign_in(app, "bob_fm", other)
        assert response.status_code == 303
        assert (await other.get("/api/account")).status_code == 200
    assert [a.id for a in await store(app).list_accounts()] == ["lastfm:bob_fm"]
    again = await store(app).get_source("lastfm:bob_fm", SourceKind.LASTFM)
    assert first is not None and again is not None and again.secret != first.secret


async def test_a_signed_in_owner_links_lastfm_to_their_widget(app: Env, up: Upstreams) -> None:
    await app.connect()  # Spotify's demo user
    up.fm.add_user("demo_fm")
    response = await lastfm_sign_in(app, "demo_fm")
    assert response.status_code == 303
    assert [a.id for a in await store(app).list_accounts()] == ["demo"]
    kinds = [s.kind for s in await store(app).list_sources("demo")]
    assert kinds == [SourceKind.LASTFM, SourceKind.SPOTIFY]


async def test_a_lastfm_user_linked_to_another_widget_is_refused(app: Env, up: Upstreams) -> None:
    """One widget per source user: a Spotify owner cannot take a Last.fm account that signs in
    to another widget; the refusal names it, escaped."""
    up.fm.add_user("<b>eve</b>")
    transport = httpx.ASGITransport(app=app.app)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as other:
        assert (await lastfm_sign_in(app, "<b>eve</b>", other)).status_code == 303
    await app.connect()
    response = await lastfm_sign_in(app, "<b>eve</b>")
    assert response.status_code == 409
    assert "&lt;b&gt;eve&lt;/b&gt;" in response.text and "<b>eve" not in response.text
    assert [s.kind for s in await store(app).list_sources("demo")] == [SourceKind.SPOTIFY]


async def test_the_owner_page_escapes_a_lastfm_name(
    app: Env, up: Upstreams, caplog: pytest.LogCaptureFixture
) -> None:
    up.fm.add_user("<script>alert(1)</script>")
    with caplog.at_level(logging.DEBUG):
        assert (await lastfm_sign_in(app, "<script>alert(1)</script>")).status_code == 303
    page = await app.client.get("/")
    assert "<script>alert(1)" not in page.text and "&lt;script&gt;alert(1)" in page.text
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("nowplaying")]
    assert ours and not any("<script>alert" in m for m in ours)


async def test_the_callback_refuses_what_is_not_its_own_login(app: Env, up: Upstreams) -> None:
    """An unknown state, one from another browser, a Spotify login's state, a state used twice:
    400 each, and nothing asked of Last.fm."""
    up.fm.add_user("bob_fm")
    token = up.fm.issue_token(LASTFM_KEY)
    up.fm.authorize(token, "bob_fm")
    assert (await app.client.get(f"/callback/lastfm?state=nope&token={token}")).status_code == 400
    assert (await app.client.get(f"/callback/lastfm?token={token}")).status_code == 400
    spotify = await app.client.get("/login")
    state = parse_qs(urlsplit(spotify.headers["location"]).query)["state"][0]
    wrong = await app.client.get(f"/callback/lastfm?state={state}&token={token}")
    assert wrong.status_code == 400
    login = await app.client.get("/login/lastfm")
    cb = parse_qs(urlsplit(login.headers["location"]).query)["cb"][0]
    state = parse_qs(urlsplit(cb).query)["state"][0]
    transport = httpx.ASGITransport(app=app.app)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as other:
        elsewhere = await other.get(f"/callback/lastfm?state={state}&token={token}")
    assert elsewhere.status_code == 400
    assert up.fm.calls["auth.getsession"] == 0
    assert await store(app).list_accounts() == []


async def test_a_token_lastfm_refuses_is_a_400_and_a_refused_key_a_502(
    app: Env, up: Upstreams
) -> None:
    async def callback_with(token: str) -> httpx.Response:
        login = await app.client.get("/login/lastfm")
        cb = parse_qs(urlsplit(login.headers["location"]).query)["cb"][0]
        return await app.client.get(f"{urlsplit(cb).path}?{urlsplit(cb).query}&token={token}")

    unallowed = up.fm.issue_token(LASTFM_KEY)  # never allowed by a user: error 14
    response = await callback_with(unallowed)
    assert response.status_code == 400 and "did not accept" in response.text
    assert (await callback_with("")).status_code == 400
    up.fm.suspended.add(LASTFM_KEY)  # error 26
    response = await callback_with(unallowed)
    assert response.status_code == 502 and "API key" in response.text
    assert await store(app).list_accounts() == []


async def test_lastfm_unconfigured_is_a_404(
    tmp_path: Path, clock: FakeClock, up: Upstreams
) -> None:
    async with env_with_upstreams(tmp_path, clock, up, lastfm_api_key="") as env:
        response = await env.client.get("/login/lastfm")
    assert response.status_code == 404 and "no Last.fm API key" in response.text


async def test_lastfm_unreachable_is_a_503(tmp_path: Path, clock: FakeClock, up: Upstreams) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with env_with_upstreams(tmp_path, clock, up, lastfm_api_url=f"{closed}/2.0/") as env:
        up.fm.add_user("bob_fm")
        response = await lastfm_sign_in(env, "bob_fm")
        assert response.status_code == 503 and "try again" in response.text
        assert await store(env).list_accounts() == []


# -- ListenBrainz ----------------------------------------------------------------------------


async def test_the_listenbrainz_page_is_a_form_for_the_token(app: Env) -> None:
    page = await app.client.get("/login/listenbrainz")
    assert page.status_code == 200
    assert 'action="/login/listenbrainz"' in page.text and 'name="token"' in page.text


async def test_signing_in_with_a_listenbrainz_token(app: Env, up: Upstreams) -> None:
    up.lb.add_user("Carol B", token="carol-token")
    response = await app.client.post(
        "/login/listenbrainz", data={"token": " carol-token "}, headers=SAME
    )
    assert response.status_code == 303 and response.headers["location"] == "/"
    (widget,) = await store(app).list_accounts()
    assert (widget.id, widget.spotify) == ("listenbrainz:Carol B", False)
    link = await store(app).get_source(widget.id, SourceKind.LISTENBRAINZ)
    assert link is not None and (link.user_name, link.secret) == ("Carol B", "carol-token")
    assert (await app.client.get("/api/account")).status_code == 200
    assert up.lb.calls["validate-token"] == 1


async def test_a_signed_in_owner_links_listenbrainz(app: Env, up: Upstreams) -> None:
    await app.connect()
    response = await app.client.post(
        "/login/listenbrainz", data={"token": "lb-demo-token"}, headers=SAME
    )
    assert response.status_code == 303
    kinds = [s.kind for s in await store(app).list_sources("demo")]
    assert kinds == [SourceKind.LISTENBRAINZ, SourceKind.SPOTIFY]


@pytest.mark.parametrize("token", ["", "   ", "x" * 201, "not-a-token", "tab\there", "tokén"])
async def test_a_bad_listenbrainz_token_says_so_on_the_page(app: Env, token: str) -> None:
    response = await app.client.post("/login/listenbrainz", data={"token": token}, headers=SAME)
    assert response.status_code == 400
    assert "data-np-error" in response.text and 'name="token"' in response.text
    assert await store(app).list_accounts() == []


async def test_listenbrainz_needs_a_same_origin_post(app: Env, up: Upstreams) -> None:
    for headers in ({}, {"Origin": "https://evil.test"}):
        response = await app.client.post(
            "/login/listenbrainz", data={"token": "lb-demo-token"}, headers=headers
        )
        assert response.status_code == 403
    assert up.lb.calls["validate-token"] == 0


async def test_listenbrainz_unreachable_is_a_503(
    tmp_path: Path, clock: FakeClock, up: Upstreams
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with env_with_upstreams(tmp_path, clock, up, listenbrainz_api_url=closed) as env:
        response = await env.client.post(
            "/login/listenbrainz", data={"token": "lb-demo-token"}, headers=SAME
        )
        assert response.status_code == 503
        assert await store(env).list_accounts() == []


# -- Spotify joins a widget made without it ------------------------------------------------------


async def test_connect_spotify_joins_a_widget_made_with_listenbrainz(env: Env) -> None:
    """Signed in with ListenBrainz, "Connect Spotify" links the grant to that widget (no second
    widget), it reads Spotify from then on, and a later Spotify sign-in from another browser
    lands on it."""
    data = {"token": "lb-demo-token"}
    assert (await env.client.post("/login/listenbrainz", data=data, headers=SAME)).is_redirect
    assert (await env.connect()).status_code == 303
    rt = env.services.runtime
    assert [a.id for a in await rt.store.list_accounts()] == ["listenbrainz:demo"]
    widget = await rt.store.get_account("listenbrainz:demo")
    assert widget is not None and widget.spotify and widget.display_name == "demo"
    spotify = await rt.store.get_source("listenbrainz:demo", SourceKind.SPOTIFY)
    assert spotify is not None and spotify.user_name == "demo"
    assert (await env.client.get("/api/spotify")).json()["isPlaying"] is True
    assert "six months" in (await env.client.get("/")).text  # a Spotify grant to renew now
    transport = httpx.ASGITransport(app=env.app)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as other:
        response = await connect_with(other, env)
        assert response.status_code == 303
        body = (await other.get("/api/account")).json()
    assert [s["kind"] for s in body["sources"]] == ["listenbrainz", "spotify"]
    assert [a.id for a in await rt.store.list_accounts()] == ["listenbrainz:demo"]


async def test_connect_spotify_of_another_widget_is_refused(env: Env) -> None:
    """A Spotify user with a widget of their own cannot join one made with ListenBrainz."""
    transport = httpx.ASGITransport(app=env.app)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as other:
        assert (await connect_with(other, env)).status_code == 303  # the widget "demo"
    data = {"token": "lb-demo-token"}
    assert (await env.client.post("/login/listenbrainz", data=data, headers=SAME)).is_redirect
    response = await env.connect()
    assert response.status_code == 409 and "another widget" in response.text
    rt = env.services.runtime
    assert [s.kind for s in await rt.store.list_sources("listenbrainz:demo")] == [
        SourceKind.LISTENBRAINZ
    ]


# -- starting without Spotify --------------------------------------------------------------------


def starts(page: str) -> list[str]:
    """The sign-in buttons of the start page, by their links."""
    return re.findall(r'href="([^"]+)" data-np-start', page)


async def test_the_start_page_offers_each_configured_source(
    tmp_path: Path, clock: FakeClock, up: Upstreams
) -> None:
    """Spotify, Last.fm with a key, ListenBrainz always; without a Last.fm key, no Last.fm."""
    async with env_with_upstreams(tmp_path, clock, up) as env:
        page = (await env.client.get("/")).text
        assert starts(page) == ["/login", "/login/lastfm", "/login/listenbrainz"]
    async with env_with_upstreams(tmp_path / "b", clock, up, lastfm_api_secret="") as env:
        assert starts((await env.client.get("/")).text) == ["/login", "/login/listenbrainz"]


async def test_a_server_without_spotify_signs_in_with_the_others(
    tmp_path: Path, clock: FakeClock, up: Upstreams
) -> None:
    """NOWPLAYING_SPOTIFY=false and no Spotify app: not demo mode, no Spotify offered, /login
    a 404; Last.fm and ListenBrainz sign owners in."""
    settings = {"nowplaying_spotify": False, "spotify_client_id": "", "spotify_client_secret": ""}
    async with env_with_upstreams(tmp_path, clock, up, **settings) as env:
        assert not env.services.demo
        assert starts((await env.client.get("/")).text) == ["/login/lastfm", "/login/listenbrainz"]
        assert (await env.client.get("/login")).status_code == 404
        up.fm.add_user("solo")
        assert (await lastfm_sign_in(env, "solo")).status_code == 303
        body = (await env.client.get("/api/account")).json()
        assert [s["kind"] for s in body["sources"]] == ["lastfm"]
        assert body["connect"] == [{"kind": "listenbrainz", "url": "/login/listenbrainz"}]


async def test_a_demo_server_signs_in_with_its_simulated_lastfm_and_listenbrainz() -> None:
    """``nowplaying serve`` in demo mode: the start page offers all three; the Last.fm flow
    walks the simulator mounted at /lastfm-sim over real HTTP, and ListenBrainz's form takes the
    simulated demo token."""
    with nowplaying_server() as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            page = (await http.get("/")).text
            assert starts(page) == ["/login", "/login/lastfm", "/login/listenbrainz"]
            cookie = await sign_in_with_lastfm(server.url)
            account = await http.get("/api/account", headers={"Cookie": cookie})
            assert account.status_code == 200, account.text
            assert [(s["kind"], s["userName"]) for s in account.json()["sources"]] == [
                ("lastfm", "demo")
            ]
            lb = await http.post(
                "/login/listenbrainz",
                data={"token": "lb-demo-token"},
                headers={"Cookie": cookie, "Origin": server.url},
            )
            assert lb.status_code == 303, lb.text
            account = await http.get("/api/account", headers={"Cookie": cookie})
            assert [s["kind"] for s in account.json()["sources"]] == ["lastfm", "listenbrainz"]


# -- never a 500 -----------------------------------------------------------------------------------


@FUZZ
@given(
    fields=st.fixed_dictionaries(
        {"state": st.none() | param_text, "token": st.none() | param_text}
    ),
    extra=query_pairs,
    real_state=st.booleans(),
)
async def test_lastfm_callback_query_never_500(
    fuzz: Fuzz, fields: dict[str, str | None], extra: list[tuple[str, str]], real_state: bool
) -> None:
    """Any /callback/lastfm query: a 400 page and no session, with or without a real state."""
    browser = fuzz.anon
    pairs: list[tuple[str, str]] = []
    if real_state:
        login = await browser.get("/login/lastfm")
        cb = dict(httpx.URL(login.headers["location"]).params)["cb"]
        pairs.append(("state", dict(httpx.URL(cb).params)["state"]))
    pairs += [
        (k, v) for k, v in fields.items() if v is not None and not (real_state and k == "state")
    ]
    response = await browser.get("/callback/lastfm?" + urlencode([*pairs, *extra]))
    assert_sane(response, json_route=False)
    assert response.status_code == 400, describe(response)
    assert SESSION not in response.headers.get("set-cookie", "")


@FUZZ
@given(body=st.binary(max_size=300) | st.builds(lambda t: urlencode({"token": t}), param_text))
async def test_listenbrainz_token_bodies_never_500(fuzz: Fuzz, body: bytes | str) -> None:
    """Any form body: the page with its message (400), or 503 when ListenBrainz holds off."""
    headers = {**SAME, "Content-Type": "application/x-www-form-urlencoded"}
    response = await fuzz.anon.post("/login/listenbrainz", content=body, headers=headers)
    assert_sane(response, json_route=False)
    assert response.status_code in (400, 503), describe(response)
    assert SESSION not in response.headers.get("set-cookie", "")
