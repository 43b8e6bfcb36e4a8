"""Rotating NOWPLAYING_SECRET_KEY: nothing answers 500, listed old keys keep everyone in, and an
account sealed with a key that is not configured reads as "reconnect needed", with the reason,
until the key is listed again (nothing is deleted) or its owner reconnects.

Each "restart" is a new app on the same SQLite file and the same simulated Spotify (so the grant
the first app stored is still one Spotify accepts).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from harness.app import SAME, SECRET_KEY, Env, make_settings, serve_app, simulated
from harness.helpers import connect, consent
from harness.sse import SSEReader

from nowplaying.clock import FakeClock
from nowplaying.crypto import CryptoError, Signer, fingerprint
from nowplaying.simulator import Simulator
from nowplaying.store import Session
from nowplaying.web.pages import REVOKED_TEXT

pytestmark = pytest.mark.anyio

OLD_KEY = SECRET_KEY
NEW_KEY = "the-new-secret-key-after-rotation-0123456789abcdef"
SESSION = "__Host-np_session"
LOGIN = "__Host-np_login"
PUBLIC_ROUTES = ("/p/{id}", "/p/{id}.json", "/p/{id}.svg", "/p/{id}/open")


@dataclass
class World:
    """One database file and one simulated Spotify that successive apps are started on."""

    tmp_path: Path
    clock: FakeClock
    sim: Simulator
    sim_http: httpx.AsyncClient

    @contextlib.asynccontextmanager
    async def serve(
        self, key: str, old: Sequence[str] = (), *, probed: bool = False
    ) -> AsyncIterator[Env]:
        """An app with ``NOWPLAYING_SECRET_KEY=key`` and ``NOWPLAYING_OLD_SECRET_KEYS=old``
        (its store behind a probe with ``probed``)."""
        settings = make_settings(
            self.tmp_path, nowplaying_secret_key=key, nowplaying_old_secret_keys=list(old)
        )
        async with serve_app(
            settings, self.sim, self.sim_http, self.clock, raise_app_exceptions=False, probed=probed
        ) as env:
            yield env


@pytest.fixture
async def world(tmp_path: Path, clock: FakeClock) -> AsyncIterator[World]:
    async with simulated(clock) as (sim, sim_http):
        sim.player("demo").play(0)
        yield World(tmp_path, clock, sim, sim_http)


async def connected_under_old_key(world: World) -> tuple[httpx.Cookies, str]:
    """Connect and publish with the old key; returns the browser's cookies and the public id."""
    async with world.serve(OLD_KEY) as env:
        assert (await env.connect()).status_code == 303
        published = await env.client.post("/api/account/publish", headers=SAME)
        public_id: str = published.json()["publicId"]
        assert (await env.client.get(f"/p/{public_id}.json")).json()["isPlaying"] is True
        return httpx.Cookies(env.client.cookies), public_id


async def session_for(env: Env, key: str) -> str:
    """A session cookie for ``demo`` signed with ``key`` (as if made after the rotation)."""
    sid = secrets.token_urlsafe(32)
    now = env.clock.now()
    await env.services.runtime.store.put_session(Session(fingerprint(sid), "demo", now, now))
    return Signer(key, "session-cookie").sign(sid)


async def test_sessions_survive_a_rotation_that_lists_the_old_key(world: World) -> None:
    """New key, old one listed: the owner stays signed in and everything is live."""
    cookies, public_id = await connected_under_old_key(world)
    async with world.serve(NEW_KEY, old=[OLD_KEY]) as env:
        env.client.cookies = cookies
        account = (await env.client.get("/api/account")).json()
        assert (account["status"], account["reconnectReason"]) == ("active", None)
        assert (await env.client.get("/api/spotify")).json()["isPlaying"] is True
        assert (await env.client.get(f"/p/{public_id}.json")).json()["isPlaying"] is True
        assert "Disconnect" in (await env.client.get("/")).text


async def test_rotating_without_the_old_key_logs_out_and_locks_the_grant(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """New key alone: owners are anonymous, public links say reconnect, Spotify is not called."""
    cookies, public_id = await connected_under_old_key(world)
    world.sim.reset_calls()
    caplog.set_level(logging.INFO)
    async with world.serve(NEW_KEY) as env:
        assert "1 of 1 account(s) were sealed with a secret key that is not configured" in (
            caplog.text
        )
        assert "NOWPLAYING_OLD_SECRET_KEYS" in caplog.text
        env.client.cookies = cookies
        assert (await env.client.get("/api/account")).json() == {"error": "not_connected"}
        assert "Connect Spotify" in (await env.client.get("/")).text
        answers = {
            route: await env.client.get(route.replace("{id}", public_id)) for route in PUBLIC_ROUTES
        }
        assert {route: r.status_code for route, r in answers.items()} == {
            "/p/{id}": 200,
            "/p/{id}.json": 200,
            "/p/{id}.svg": 200,
            "/p/{id}/open": 404,
        }
        assert answers["/p/{id}.json"].json() == {"error": "reconnect_required"}
        card = answers["/p/{id}.svg"]
        assert card.headers["content-type"].startswith("image/svg+xml")
        assert "Reconnect needed" in card.text
        async with SSEReader(env.app, f"/p/{public_id}/events") as sse:
            await sse.wait_for(1)
        assert sse.status == 200
        assert sse.events[0].data == {"error": "reconnect_required"}
        await env.clock.advance(30)
    assert world.sim.calls["token"] == world.sim.calls["currently-playing"] == 0
    # Nothing was deleted: listing the old key again brings the owner and the grant back.
    async with world.serve(NEW_KEY, old=[OLD_KEY]) as env:
        env.client.cookies = cookies
        assert (await env.client.get("/api/account")).json()["status"] == "active"
        assert (await env.client.get(f"/p/{public_id}.json")).json()["isPlaying"] is True


async def test_the_owner_is_told_why_and_can_reconnect(world: World) -> None:
    """A session under the new key on an account sealed with the old one: the page says why."""
    _, public_id = await connected_under_old_key(world)
    async with world.serve(NEW_KEY) as env:
        env.client.cookies.set(SESSION, await session_for(env, NEW_KEY), domain="np.test")
        account = (await env.client.get("/api/account")).json()
        assert account["status"] == "reconnect_required"
        assert account["reconnectReason"] == "unknown_key"
        home = (await env.client.get("/")).text
        assert 'data-np-reason="unknown_key"' in home
        assert "secret key changed" in home and "NOWPLAYING_OLD_SECRET_KEYS" in home
        assert 'href="/login"' in home
        private = await env.client.get("/api/spotify")
        assert (private.status_code, private.json()) == (401, {"error": "reconnect_required"})
        cookie = {"Cookie": f"{SESSION}={env.client.cookies.get(SESSION)}"}
        async with SSEReader(env.app, "/api/spotify/events", cookie) as sse:
            assert await sse.wait_status() == 401
        # Reconnecting seals the grant with the new key: live again, same public link.
        assert (await env.connect()).status_code == 303
        account = (await env.client.get("/api/account")).json()
        assert (account["status"], account["reconnectReason"]) == ("active", None)
        assert account["publicId"] == public_id
        assert (await env.client.get(f"/p/{public_id}.json")).json()["isPlaying"] is True
        assert "data-np-reason" not in (await env.client.get("/")).text


async def test_a_revoked_grant_gives_the_revoked_reason(world: World) -> None:
    """Spotify refusing the grant: ``revoked``, with the existing reconnect text."""
    async with world.serve(OLD_KEY) as env:
        assert (await env.connect()).status_code == 303
        world.sim.revoke("demo")
        env.services.runtime.tokens.forget("demo")
        await env.services.runtime.hub.forget("demo")
        assert (await env.client.get("/api/spotify")).json() == {"error": "reconnect_required"}
        account = (await env.client.get("/api/account")).json()
        assert (account["status"], account["reconnectReason"]) == ("reconnect_required", "revoked")
        home = (await env.client.get("/")).text
        assert 'data-np-reason="revoked"' in home and REVOKED_TEXT in home
        assert "secret key" not in home


@pytest.mark.parametrize(("old", "status"), [([OLD_KEY], 303), ([], 400)])
async def test_a_login_started_before_the_rotation(
    world: World, old: list[str], status: int
) -> None:
    """The pre-login cookie verifies with a listed old key; without it the login starts again."""
    async with world.serve(OLD_KEY) as env:
        login = await env.client.get("/login")
        cookies = httpx.Cookies(env.client.cookies)
    assert LOGIN in cookies
    redirect = await consent(world.sim_http, login.headers["location"])
    query = urlsplit(redirect.headers["location"]).query
    async with world.serve(NEW_KEY, old=old) as env:
        env.client.cookies = cookies
        assert (await env.client.get(f"/callback?{query}")).status_code == status


async def test_a_crypto_error_that_escapes_is_never_a_500(world: World) -> None:
    """The net under the store: a CryptoError reaching a route answers as reconnect-required."""
    async with world.serve(OLD_KEY, probed=True) as env:
        assert (await connect(env.client, world.sim_http)).status_code == 303
        public_id = (await env.client.post("/api/account/publish", headers=SAME)).json()["publicId"]
        unopenable = CryptoError("sealed with an unknown key")
        for name in ("get_account", "get_account_info", "get_account_by_public_id"):
            env.probe.failing[name] = unopenable
        card = await env.client.get(f"/p/{public_id}.svg?theme=dark")
        assert card.status_code == 200
        assert card.headers["content-type"].startswith("image/svg+xml")
        assert "Reconnect needed" in card.text
        public = await env.client.get(f"/p/{public_id}.json")
        assert (public.status_code, public.json()) == (200, {"error": "reconnect_required"})
        assert public.headers["access-control-allow-origin"] == "*"
        for path in ("/api/account", "/api/spotify"):
            private = await env.client.get(path)
            assert (private.status_code, private.json()["error"]) == (401, "reconnect_required")
        home = await env.client.get("/")
        assert home.status_code == 200 and "NOWPLAYING_OLD_SECRET_KEYS" in home.text
        for route in ("/p/{id}", "/p/{id}/open"):
            assert (await env.client.get(route.replace("{id}", public_id))).status_code < 500
