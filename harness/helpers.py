"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nowplaying.clock import Clock, FakeClock
from nowplaying.engine.reads import Reads
from nowplaying.models import NowPlaying, PlayedItem
from nowplaying.ops.metrics import Metrics
from nowplaying.sources.budget import CallBudget
from nowplaying.sources.spotify.client import SpotifyClient
from nowplaying.web.edge import Edge
from nowplaying.web.limits import Rule

FIXTURES = Path(__file__).parent / "fixtures" / "spotify"


def fixture_json(name: str, source: str = "spotify") -> Any:
    """A recorded payload of ``source`` from harness/fixtures/<source>/ (each folder's
    SOURCES.md says where they come from)."""
    return json.loads((FIXTURES.parent / source / name).read_text(encoding="utf-8"))


def shape(value: Any) -> Any:
    """A payload's keys and value types, a list by its first item: what a simulated answer
    must share with a recorded one."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


class FormParser(HTMLParser):
    """Collects the first form's action and its named fields (hidden inputs, selects)."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = a.get("action", "")
        elif tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select = a.get("name")
        elif (
            tag == "option"
            and self._select
            and ("selected" in a or self._select not in self.fields)
        ):
            self.fields[self._select] = a.get("value", "")


async def consent(
    sim_http: httpx.AsyncClient, authorize_url: str, *, decision: str = "agree", user: str = "demo"
) -> httpx.Response:
    """Open the simulator's consent page and press Agree (or Cancel) as ``user``."""
    page = await sim_http.get(authorize_url)
    if page.is_redirect and decision == "agree":
        return page  # consent given before: Spotify goes straight back, like the real one
    assert page.status_code == 200, page.text
    form = FormParser()
    form.feed(page.text)
    fields = {**form.fields, "decision": decision, "user": user}
    action = urljoin(str(page.url), form.action or "")
    return await sim_http.post(action, data=fields)


async def connect(
    client: httpx.AsyncClient,
    sim_http: httpx.AsyncClient,
    *,
    user: str = "demo",
    login_path: str = "/login",
) -> httpx.Response:
    """/login → consent (Agree) → /callback; returns the callback's response."""
    login = await client.get(login_path)
    assert login.status_code == 302, login.text
    redirect = await consent(sim_http, login.headers["location"], user=user)
    assert redirect.status_code in (302, 303), redirect.text
    callback = urlsplit(redirect.headers["location"])
    return await client.get(f"{callback.path}?{callback.query}")


def sim_client(
    http: httpx.AsyncClient,
    clock: Clock,
    *,
    base: str = "http://sim.test",
    client_id: str = "cid",
    client_secret: str = "csecret",
    budget: CallBudget | None = None,
) -> SpotifyClient:
    """The project's Spotify client for a simulator served at ``base`` over ``http``."""
    return SpotifyClient(
        http,
        client_id=client_id,
        client_secret=SecretStr(client_secret),
        accounts_url=base,
        api_url=f"{base}/v1",
        clock=clock,
        budget=budget,
    )


@contextlib.asynccontextmanager
async def edge_client(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> AsyncIterator[httpx.AsyncClient]:
    """``endpoint`` at /p/x and /p/limited (1 request/s) behind the edge middleware, with small
    limits (100-byte bodies, 2,000 bytes of headers, host ``testserver``)."""
    rule = Rule("public", lambda p: p == "/p/limited", rate=1.0, burst=1)
    app = Starlette(
        routes=[Route(p, endpoint, methods=["GET", "POST"]) for p in ("/p/x", "/p/limited")],
        middleware=[
            Middleware(
                Edge,
                metrics=Metrics(),
                clock=FakeClock(),
                hosts={"testserver"},
                rules=(rule,),
                max_body=100,
                max_headers=2000,
            ),
        ],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def stop(proc: subprocess.Popen[bytes], seconds: float, *, kill_wait: float = 5) -> None:
    """SIGTERM ``proc``; SIGKILL it if it has not exited within ``seconds``."""
    proc.terminate()
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(kill_wait)


class FetchSource:
    """A :class:`~nowplaying.sources.base.Source` whose reads of what plays are one function (a
    test's fake upstream); it tells no history."""

    def __init__(self, fetch: Callable[[str], Awaitable[NowPlaying]]) -> None:
        self._fetch = fetch

    async def now_playing(self, account_id: str) -> NowPlaying:
        return await self._fetch(account_id)

    async def recently_played(self, account_id: str, limit: int) -> list[PlayedItem]:
        return []

    def tells_history(self, scopes: frozenset[str]) -> bool:
        return False


def reads_of(fetch: Callable[[str], Awaitable[NowPlaying]]) -> Reads:
    """The live engine's reads of a fake upstream ``fetch(account_id)``."""
    return Reads(FetchSource(fetch))


ONE_ADDRESS_AUDIENCE = {
    "NOWPLAYING_PUBLIC_RATE_PER_SECOND": "0",
    "NOWPLAYING_CONNECTIONS_PER_ADDRESS": "1000000",
}
"""Settings for a server whose whole audience comes from 127.0.0.1 (benches, soaks): the
per-address rate limit and connection cap would refuse it."""


async def lastfm_allow(authorize_url: str, user: str) -> httpx.Response:
    """What the owner does on Last.fm's consent page: allow as ``user``; Last.fm's answer (the
    redirect back to the callback, with the token)."""
    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(authorize_url)
        assert page.status_code == 200, page.text
        form = FormParser()
        form.feed(page.text)
        action = urljoin(str(page.url), form.action or "")
        return await browser.post(action, data={**form.fields, "user": user})
