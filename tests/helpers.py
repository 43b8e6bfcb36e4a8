"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import SecretStr

from nowplaying.budget import CallBudget
from nowplaying.clock import Clock
from nowplaying.spotify import SpotifyClient

FIXTURES = Path(__file__).parent / "fixtures" / "spotify"


def fixture_json(name: str) -> Any:
    """A recorded Spotify payload from tests/fixtures/spotify (copied from ../shared)."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class _FormParser(HTMLParser):
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
    form = _FormParser()
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
