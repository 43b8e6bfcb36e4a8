"""The simulator as its tests drive it: a :class:`SimEnv` (the simulator on a fake clock, a client
for it, the steps of the OAuth flow) and a :class:`LiveServer` on a loopback socket (the
fixtures are tests/simulator/conftest.py's)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from harness.helpers import fixture_json
from nowplaying.clock import FakeClock
from nowplaying.simulator import Simulator
from nowplaying.simulator.catalog import Item

CLIENT_ID = "cid"
CLIENT_SECRET = "csecret"
REDIRECT = "http://127.0.0.1:8000/callback"
SCOPES = "user-read-currently-playing user-read-recently-played"
BASE = "http://sim.test"


@dataclass
class SimEnv:
    """A simulator on a fake clock, an HTTP client for it, and the steps of the OAuth flow."""

    sim: Simulator
    http: httpx.AsyncClient
    clock: FakeClock

    client_id = CLIENT_ID
    client_secret = CLIENT_SECRET
    redirect = REDIRECT
    scopes = SCOPES

    @staticmethod
    def auth_params(**overrides: str | None) -> dict[str, str]:
        """Query of a valid ``/authorize`` request; an override of None drops the key."""
        params: dict[str, str | None] = {
            "client_id": CLIENT_ID,
            "response_type": "code",
            "redirect_uri": REDIRECT,
            "scope": SCOPES,
            "state": "st4te",
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v is not None}

    @staticmethod
    def pkce_pair() -> tuple[str, str]:
        """A fresh PKCE ``(verifier, S256 challenge)``."""
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    @staticmethod
    def query_of(response: httpx.Response) -> dict[str, str]:
        """The query parameters of a redirect's ``Location``."""
        return dict(httpx.URL(response.headers["location"]).params)

    @staticmethod
    def recorded(name: str) -> dict[str, Any]:
        """A recorded real Spotify payload from ``harness/fixtures/spotify``."""
        data: dict[str, Any] = fixture_json(name)
        return data

    @staticmethod
    def bearer(access_token: str) -> dict[str, str]:
        """The Authorization header for ``access_token``."""
        return {"Authorization": f"Bearer {access_token}"}

    async def consent(self, **params: str | None) -> httpx.Response:
        """Submit the consent form as a browser would after ``GET /authorize``.

        ``decision`` (default "agree") and ``user`` (default "demo") are form fields; the other
        keywords override :meth:`auth_params`.
        """
        decision = params.pop("decision", None) or "agree"
        user = params.pop("user", None) or "demo"
        form = {**self.auth_params(**params), "decision": decision, "user": user}
        return await self.http.post("/authorize", data=form)

    async def code(self, **params: str | None) -> str:
        """An authorization code from an agreed consent."""
        return self.query_of(await self.consent(**params))["code"]

    async def exchange(
        self, code: str, *, auth: tuple[str, str] | None = (CLIENT_ID, CLIENT_SECRET), **extra: str
    ) -> httpx.Response:
        """``POST /api/token`` with an authorization code."""
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
        return await self._token({**data, **extra}, auth)

    async def refresh(
        self,
        refresh_token: str,
        *,
        auth: tuple[str, str] | None = (CLIENT_ID, CLIENT_SECRET),
        **extra: str,
    ) -> httpx.Response:
        """``POST /api/token`` with a refresh token."""
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
        return await self._token(data, auth)

    async def _token(self, data: dict[str, str], auth: tuple[str, str] | None) -> httpx.Response:
        if auth is None:
            return await self.http.post("/api/token", data=data)
        return await self.http.post("/api/token", data=data, auth=auth)

    async def login(self, scopes: str = SCOPES, user: str = "demo") -> dict[str, Any]:
        """The token response of a full consent and code exchange."""
        code = await self.code(scope=scopes, user=user, show_dialog="true")
        response = await self.exchange(code)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def api(self, path: str, token: str, **params: str) -> httpx.Response:
        """``GET /v1{path}`` with ``token``."""
        return await self.http.get(f"/v1{path}", headers=self.bearer(token), params=params)

    async def playing(self, token: str | None = None, **params: str) -> httpx.Response:
        """``GET /v1/me/player/currently-playing`` (with a fresh grant when no token is given)."""
        token = token or self.sim.grant("demo").access_token
        return await self.api("/me/player/currently-playing", token, **params)

    def index_of(self, predicate: Callable[[Item], bool], user: str = "demo") -> int:
        """The playlist index of the first item matching ``predicate``."""
        playlist = self.sim.player(user).playlist
        return next(i for i, item in enumerate(playlist) if predicate(item))


@dataclass
class LiveServer:
    """A simulator served by uvicorn on a real loopback socket."""

    sim: Simulator
    url: str
