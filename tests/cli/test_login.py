"""One connect / disconnect path: what it stores and invalidates, whoever calls it (the web
callback, ``/logout``, ``nowplaying login``), and the login handed over to a running server."""

from __future__ import annotations

import asyncio
import io
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from harness.app import Env, make_settings
from harness.helpers import consent
from harness.live_server import free_port
from starlette.applications import Starlette

from nowplaying.cli.login import LoginFailed, Waiting, terminal_login
from nowplaying.cli.main import login_flow
from nowplaying.clock import FakeClock
from nowplaying.crypto import fingerprint
from nowplaying.engine.accounts import (
    TERMINAL_BROWSER,
    connect_account,
    disconnect_account,
    is_terminal_login,
    terminal_login_state,
)
from nowplaying.models import Grant, Profile, Token
from nowplaying.runtime import Runtime
from nowplaying.simulator import Simulator
from nowplaying.sources.spotify.oauth import SCOPE_CURRENTLY_PLAYING
from nowplaying.store import AccountStatus, LoginState, Session
from nowplaying.web import create_app
from nowplaying.web.state import Services

pytestmark = pytest.mark.anyio
SCOPES = frozenset({SCOPE_CURRENTLY_PLAYING})


def _grant(clock: FakeClock, *, access: str = "new-access", refresh: str = "new-refresh") -> Grant:
    token = Token(access, clock.now() + 3600, SCOPES, refresh)
    return Grant(token, Profile("demo", "Demo Listener"))


async def _eventually(env: Env, check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Move the fake clock a second at a time until ``check()`` holds (bounded). The real-time
    yield lets SQLite's worker thread finish what a woken poller asked of it."""
    for _ in range(60):
        if await check():
            return
        await env.clock.advance(1)
        await asyncio.sleep(0.01)
    raise AssertionError(what)


async def _watched_then_revoked(env: Env) -> None:
    """The account is being watched, then its grant is revoked: the hub says RECONNECT."""
    assert (await env.client.get("/api/spotify")).status_code == 200
    env.sim.revoke("demo")

    async def reconnect_known() -> bool:
        snap = env.services.runtime.hub.peek("demo")
        account = await env.services.runtime.store.get_account("demo")
        return (
            snap is not None
            and snap.grant_gone
            and account is not None
            and account.status is AccountStatus.RECONNECT_REQUIRED
        )

    await _eventually(env, reconnect_known, "the revoke was not noticed")


def _not_reconnect(env: Env) -> bool:
    snap = env.services.runtime.hub.peek("demo")
    return snap is None or not snap.grant_gone


# -- connect_account / disconnect_account ------------------------------------------------------


async def test_connect_account_keeps_the_link_and_starts_afresh(connected: Env) -> None:
    """A re-connect keeps public_id and show_last_played, is ACTIVE and consented now, serves
    the new access token, and the hub forgets the old state."""
    svc = connected.services
    await svc.runtime.store.set_public_id("demo", "pub-id-0123456789abcdef")
    await svc.runtime.store.set_show_last_played("demo", True)
    await _watched_then_revoked(connected)
    await connected.clock.advance(5)

    account = await connect_account(svc.runtime, _grant(connected.clock), requested=SCOPES)

    assert account.public_id == "pub-id-0123456789abcdef"
    assert account.show_last_played
    assert account.status is AccountStatus.ACTIVE
    assert account.consented_at == connected.clock.now()
    stored = await svc.runtime.store.get_account("demo")
    assert stored is not None and stored.refresh_token == "new-refresh"
    assert stored.status is AccountStatus.ACTIVE
    snap = svc.runtime.hub.peek("demo")  # restarted for the new grant: no reconnect left
    assert snap is not None and not snap.grant_gone
    assert (await svc.runtime.tokens.token("demo")).access_token == "new-access"


async def test_connect_account_new_row_uses_requested_scopes(env: Env) -> None:
    """No earlier row: no link, last-played off, the requested scopes when Spotify lists none."""
    token = Token("a", env.clock.now() + 3600, frozenset(), "r")
    account = await connect_account(
        env.services.runtime, Grant(token, Profile("demo", "Demo")), requested=SCOPES
    )
    assert account.public_id is None and not account.show_last_played
    assert account.scopes == SCOPES


async def test_disconnect_account_forgets_everything(connected: Env) -> None:
    """Sessions, the row, the access token and the live state are all gone."""
    svc = connected.services
    assert (await connected.client.get("/api/spotify")).status_code == 200
    assert svc.runtime.hub.peek("demo") is not None
    await svc.runtime.store.put_session(Session("k" * 64, "demo", connected.clock.now(), 0.0))
    refreshes = connected.sim.calls["token:refresh_token"]

    await disconnect_account(svc.runtime, "demo")

    assert await svc.runtime.store.get_account("demo") is None
    assert await svc.runtime.store.get_session("k" * 64) is None
    assert svc.runtime.hub.peek("demo") is None
    with pytest.raises(Exception, match="not connected"):
        await svc.runtime.tokens.token("demo")  # no cached token: a refresh is tried, and refused
    assert connected.sim.calls["token:refresh_token"] == refreshes


async def test_logout_goes_through_disconnect(connected: Env) -> None:
    """POST /logout (same origin) disconnects: row and live state gone, the cookie works no more."""
    svc = connected.services
    assert (await connected.client.get("/api/spotify")).status_code == 200
    response = await connected.client.post("/logout", headers={"Origin": "https://np.test"})
    assert response.status_code == 303
    assert await svc.runtime.store.get_account("demo") is None
    assert svc.runtime.hub.peek("demo") is None
    assert (await connected.client.get("/api/spotify")).status_code == 401


# -- every entry point re-connects through it --------------------------------------------------


async def test_web_relogin_after_revoke_is_live_again(connected: Env) -> None:
    """Revoked, then the browser connects again: the hub's RECONNECT is gone and the new
    access token is used at once (no refresh, no 401 with the revoked one)."""
    await _watched_then_revoked(connected)
    refreshes = connected.sim.calls["token:refresh_token"]
    response = await connected.connect()
    assert response.status_code == 303
    snap = connected.services.runtime.hub.peek(
        "demo"
    )  # restarted for the new grant: no reconnect left
    assert snap is not None and not snap.grant_gone
    body = (await connected.client.get("/api/spotify")).json()
    assert body["isPlaying"] is True
    assert connected.sim.calls["token:refresh_token"] == refreshes


def _runtime_of(svc: Services, sim_http: httpx.AsyncClient) -> Runtime:
    """The CLI's runtime over the app's own parts, so its effect on them can be seen."""
    return replace(svc.runtime, http=sim_http)


async def test_cli_relogin_after_revoke_is_live_again(connected: Env) -> None:
    """The same re-connect from `nowplaying login` (paste path) invalidates the same state."""
    await _watched_then_revoked(connected)
    refreshes = connected.sim.calls["token:refresh_token"]
    urls: list[str] = []

    announced = asyncio.Event()

    async def paste() -> str:
        await announced.wait()
        return str((await consent(connected.sim_http, urls[0])).headers["location"])

    def announce(url: str, how: Waiting) -> None:
        urls.append(url)
        announced.set()

    rt = _runtime_of(connected.services, connected.sim_http)
    account = await terminal_login(rt, announce=announce, pasted=paste, wait_seconds=60)
    assert account.status is AccountStatus.ACTIVE
    snap = connected.services.runtime.hub.peek(
        "demo"
    )  # restarted for the new grant: no reconnect left
    assert snap is not None and not snap.grant_gone
    body = (await connected.client.get("/api/spotify")).json()
    assert body["isPlaying"] is True
    assert connected.sim.calls["token:refresh_token"] == refreshes


# -- the hand-off to a running server -----------------------------------------------------------


@dataclass
class Beside:
    """A server app on a loopback redirect URI whose port is held, and the simulator."""

    app: Starlette
    sim: Simulator
    sim_http: httpx.AsyncClient
    browser: httpx.AsyncClient
    clock: FakeClock
    tmp_path: Path
    redirect_uri: str

    @property
    def services(self) -> Services:
        svc: Services = self.app.state.services
        return svc


@pytest.fixture
async def beside(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Beside]:
    port = free_port()
    redirect_uri = f"http://127.0.0.1:{port}/callback"
    sim = Simulator(
        clock=clock,
        client_id="cid",
        client_secret="csecret-for-tests",
        redirect_uris=(redirect_uri,),
    )
    sim.player("demo").set_gaps(0)
    held = socket.socket()
    held.bind(("127.0.0.1", port))
    held.listen(1)  # the running server holds the redirect URI's port
    settings = make_settings(tmp_path, spotify_redirect_uri=redirect_uri)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app), base_url="http://sim.test"
    ) as sim_http:
        app = create_app(settings, http=sim_http, clock=clock)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=f"http://127.0.0.1:{port}"
            ) as browser,
        ):
            try:
                yield Beside(app, sim, sim_http, browser, clock, tmp_path, redirect_uri)
            finally:
                held.close()


class Out(io.StringIO):
    """A terminal to read what the command printed, waiting (bounded) for it to print."""

    def __init__(self) -> None:
        super().__init__()
        self.wrote = asyncio.Event()

    def write(self, text: str) -> int:
        self.wrote.set()
        return super().write(text)


async def _announced(out: Out) -> str:
    """The authorize URL the command printed (it first opens its store: real time, bounded)."""
    async with asyncio.timeout(10):
        while not (match := re.search(r"(http://sim\.test/authorize\?\S+)", out.getvalue())):
            out.wrote.clear()
            await out.wrote.wait()
    return match.group(1)


async def _finish(task: asyncio.Task[int], clock: FakeClock) -> int:
    """Move the clock a second at a time until the login command returns (its store watch naps
    on the clock; between steps, a bounded real-time wait lets SQLite's thread answer)."""
    for _ in range(60):
        await asyncio.wait({task}, timeout=0.02)
        if task.done():
            break
        await clock.advance(1)
    return await asyncio.wait_for(task, 5)


async def test_login_beside_a_running_server_is_completed_by_it(beside: Beside) -> None:
    """Port taken: the CLI says so, the server's /callback completes the login (no session, no
    browser binding), and the CLI prints the URLs of the account it sees connected."""
    out = Out()
    settings = make_settings(beside.tmp_path, spotify_redirect_uri=beside.redirect_uri)
    task = asyncio.create_task(
        login_flow(settings, out=out, http=beside.sim_http, clock=beside.clock, wait_seconds=60)
    )
    url = await _announced(out)
    assert "is in use" in out.getvalue() and "paste" not in out.getvalue()
    redirect = urlsplit((await consent(beside.sim_http, url)).headers["location"])
    assert f"{redirect.scheme}://{redirect.netloc}{redirect.path}" == beside.redirect_uri

    page = await beside.browser.get(f"{redirect.path}?{redirect.query}")  # no login cookie

    assert page.status_code == 200, page.text
    assert "go back to your terminal" in page.text
    assert "set-cookie" not in page.headers
    assert await _finish(task, beside.clock) == 0, out.getvalue()
    text = out.getvalue()
    assert "Connected Demo Listener (demo)" in text
    match = re.search(r"/p/([A-Za-z0-9_-]{22})\.svg", text)
    assert match
    account = await beside.services.runtime.store.get_account("demo")
    assert account is not None and account.public_id == match.group(1)
    assert beside.sim.calls["token:authorization_code"] == 1
    public = await beside.browser.get(f"/p/{match.group(1)}.json")
    assert public.json()["isPlaying"] is True
    # The state was single-use: the same redirect again is refused.
    again = await beside.browser.get(f"{redirect.path}?{redirect.query}")
    assert again.status_code == 400


async def test_login_beside_a_server_times_out_and_withdraws(beside: Beside) -> None:
    """Nobody completes it: the command fails after its wait and leaves no pending login."""
    out = Out()
    settings = make_settings(beside.tmp_path, spotify_redirect_uri=beside.redirect_uri)
    task = asyncio.create_task(
        login_flow(settings, out=out, http=beside.sim_http, clock=beside.clock, wait_seconds=10)
    )
    url = await _announced(out)
    state = parse_qs(urlsplit(url).query)["state"][0]
    assert await _finish(task, beside.clock) == 1
    assert "timed out" in out.getvalue()
    assert await beside.services.runtime.store.take_login(state) is None


async def test_login_beside_a_server_pasted_first(beside: Beside) -> None:
    """Port taken, the address pasted before the server saw it: the CLI completes the login
    itself and takes the pending one back, so the server can no longer use it."""
    settings = make_settings(beside.tmp_path, spotify_redirect_uri=beside.redirect_uri)
    out = Out()
    redirects: list[str] = []

    async def paste() -> str:
        url = await _announced(out)
        redirects.append(str((await consent(beside.sim_http, url)).headers["location"]))
        return redirects[0]

    code = await login_flow(
        settings, out=out, pasted=paste, http=beside.sim_http, clock=beside.clock, wait_seconds=60
    )
    assert code == 0, out.getvalue()
    assert "is in use" in out.getvalue() and "paste the address" in out.getvalue()
    late = urlsplit(redirects[0])
    assert (await beside.browser.get(f"{late.path}?{late.query}")).status_code == 400
    assert beside.sim.calls["token:authorization_code"] == 1


async def test_a_browser_cannot_complete_a_browser_login_without_its_cookie(env: Env) -> None:
    """The hand-off waives the browser binding for terminal logins only."""
    now = env.clock.now()
    await env.services.runtime.store.put_login(
        LoginState("s" * 43, "v" * 64, fingerprint("x"), now)
    )
    response = await env.client.get(f"/callback?state={'s' * 43}&code=abc")
    assert response.status_code == 400
    assert env.sim.calls["token"] == 0


def test_the_terminal_marker_is_no_fingerprint() -> None:
    """No browser fingerprint (a SHA-256 hex digest) can equal the terminal marker."""
    assert not re.fullmatch(r"[0-9a-f]{64}", TERMINAL_BROWSER)
    login = terminal_login_state("s", "v", now=0.0, scopes=SCOPES)
    assert is_terminal_login(login)
    assert not is_terminal_login(LoginState("s", "v", fingerprint("x"), 0.0))


async def test_waiting_says_listening_when_the_port_is_free(tmp_path: Path, env: Env) -> None:
    """Port free: the command listens there itself and stores no pending login."""
    port = free_port()
    settings = make_settings(tmp_path, spotify_redirect_uri=f"http://127.0.0.1:{port}/callback")
    rt = replace(env.services.runtime, settings=settings, http=env.sim_http)
    seen: list[Waiting] = []
    with pytest.raises(LoginFailed, match="timed out"):
        await terminal_login(rt, announce=lambda url, how: seen.append(how), wait_seconds=0)
    assert seen and seen[0].listener and not seen[0].server
