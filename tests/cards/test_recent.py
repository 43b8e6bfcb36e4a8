"""The recently-played card: an SVG list behind the owner's consent, one Spotify call per TTL."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from harness.app import SAME, Env

from nowplaying.cards.options import RecentOptions
from nowplaying.cards.recent import render_recent
from nowplaying.cards.themes import Theme
from nowplaying.clock import FakeClock
from nowplaying.engine.recent import RECENT_TTL, RecentlyPlayed
from nowplaying.models import PlayedItem
from nowplaying.schema import Recent
from nowplaying.sources.spotify.errors import RateLimited

pytestmark = pytest.mark.anyio
NS = "{http://www.w3.org/2000/svg}"
NOW = 1_767_225_600.0
HOSTILE = "</text><script>alert(1)</script> & <b onload=x>"


def recent(n: int, *, playing: bool = False, title: str = "Song") -> Recent:
    data: dict[str, Any] = {
        "items": [
            {"type": "track", "title": f"{title} {i}", "artist": "Band", "playedAt": NOW - 60 * i}
            for i in range(1, n + 1)
        ]
    }
    if playing:
        data["nowPlaying"] = {
            "isPlaying": True,
            "type": "track",
            "title": "Live one",
            "artist": "Band",
            "progressMs": 1000,
            "durationMs": 200_000,
        }
    return Recent.model_validate(data)


def rows(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return ["".join(t.itertext()) for t in root.iter(f"{NS}text") if "row" in t.get("class", "")]


@pytest.mark.parametrize("theme", list(Theme))
def test_the_list_in_every_theme(theme: Theme) -> None:
    """Now playing on top, then the last tracks, newest first; well-formed, sized, accessible."""
    svg = render_recent(
        recent(4, playing=True), RecentOptions(theme=theme, limit=5), covers={}, now=NOW
    )
    root = ET.fromstring(svg)
    assert rows(svg) == ["Live one", "Song 1", "Song 2", "Song 3", "Song 4"]
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    assert root.get("role") == "img"
    title = root.find(f"{NS}title")
    assert title is not None and (title.text or "").startswith("Now playing: Live one by Band.")
    assert "Now playing" in "".join(root.itertext())
    assert "prefers-reduced-motion:reduce" in svg


@pytest.mark.parametrize("limit", [1, 3, 10])
def test_limit_counts_rows(limit: int) -> None:
    """At most ``limit`` rows, now playing included; the height follows the rows."""
    idle = render_recent(recent(10), RecentOptions(limit=limit), covers={}, now=NOW)
    live = render_recent(recent(10, playing=True), RecentOptions(limit=limit), covers={}, now=NOW)
    assert len(rows(idle)) == limit == len(rows(live))
    assert ET.fromstring(idle).get("height") == str(40 + limit * 52 + 8)


def test_hostile_titles_stay_text() -> None:
    """Markup in a title comes out as text."""
    svg = render_recent(recent(2, title=HOSTILE), RecentOptions(), covers={}, now=NOW)
    root = ET.fromstring(svg)
    assert "<script" not in svg
    assert not [n for n in root.iter() if n.tag.endswith("script")]
    assert rows(svg)[0].startswith("</text><script>")


def test_empty_list_says_so() -> None:
    svg = render_recent(recent(0), RecentOptions(), covers={}, now=NOW)
    assert "Nothing played yet" in svg and rows(svg) == []


def test_hide_cover_and_artist() -> None:
    svg = render_recent(
        recent(2),
        RecentOptions(hide=frozenset({"cover", "artist"})),  # type: ignore[arg-type]
        covers={},
        now=NOW,
    )
    assert "Band" not in svg and 'class="note"' not in svg


class Reads:
    def __init__(self) -> None:
        self.calls = 0
        self.fail: Exception | None = None
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, account_id: str, limit: int) -> list[PlayedItem]:
        self.calls += 1
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return []


async def test_cache_one_call_per_ttl() -> None:
    """100 concurrent views share one call; none until the TTL has passed on the clock."""
    clock, reads = FakeClock(), Reads()
    cache = RecentlyPlayed(reads, clock)
    reads.gate.clear()
    views = [asyncio.create_task(cache.get("a", 5)) for _ in range(100)]
    await asyncio.sleep(0)
    reads.gate.set()
    await asyncio.gather(*views)
    assert reads.calls == 1
    await clock.advance(RECENT_TTL - 1)
    await cache.get("a")
    assert reads.calls == 1
    await clock.advance(1)
    await cache.get("a")
    assert reads.calls == 2
    await cache.get("b")
    assert reads.calls == 3  # per account


async def test_a_failure_is_not_retried_by_every_view() -> None:
    """Spotify refusing: the error is kept for the TTL (no call per view), then tried again."""
    clock, reads = FakeClock(), Reads()
    cache = RecentlyPlayed(reads, clock)
    reads.fail = RateLimited(5, None)
    for _ in range(20):
        with pytest.raises(RateLimited):
            await cache.get("a")
    assert reads.calls == 1
    reads.fail = None
    await clock.advance(RECENT_TTL)
    assert await cache.get("a") == []
    assert reads.calls == 2


async def share_recent(env: Env) -> str:
    public_id: str = (await env.client.post("/api/account/publish", headers=SAME)).json()[
        "publicId"
    ]
    await env.client.post("/api/account/settings", json={"lastPlayed": True}, headers=SAME)
    await env.connect(login_path="/login?with=recently-played")
    return public_id


async def test_not_shared_until_the_owner_turns_it_on(connected: Env) -> None:
    """Without the setting and the scope: a 'Not shared' card, a 404 JSON, no Spotify call."""
    public_id = (await connected.client.post("/api/account/publish", headers=SAME)).json()[
        "publicId"
    ]
    connected.sim.reset_calls()
    card = await connected.client.get(f"/p/{public_id}/recent.svg")
    assert card.status_code == 200 and "Not shared" in card.text
    assert (await connected.client.get(f"/p/{public_id}/recent.json")).status_code == 404
    assert connected.sim.calls["recently-played"] == 0


async def test_views_cost_one_call_per_ttl(connected: Env) -> None:
    """However many views, one recently-played call per account per TTL of the fake clock."""
    connected.sim.player("demo").play(1, progress_ms=1000)
    public_id = await share_recent(connected)
    connected.sim.reset_calls()
    paths = [f"/p/{public_id}/recent.svg", f"/p/{public_id}/recent.json?limit=3"] * 30
    responses = await asyncio.gather(*(connected.client.get(p) for p in paths))
    assert all(r.status_code == 200 for r in responses)
    assert connected.sim.calls["recently-played"] == 1
    body = responses[1].json()
    assert body["nowPlaying"]["isPlaying"] is True
    assert 1 <= len(body["items"]) <= 3
    svg = ET.fromstring(responses[0].text)
    assert svg.get("role") == "img" and "Recently played" in "".join(svg.itertext())
    await connected.clock.advance(RECENT_TTL / 2)
    await connected.client.get(f"/p/{public_id}/recent.svg")
    assert connected.sim.calls["recently-played"] == 1
    await connected.clock.advance(RECENT_TTL / 2)
    await connected.client.get(f"/p/{public_id}/recent.svg")
    assert connected.sim.calls["recently-played"] == 2


async def test_bad_parameters(connected: Env) -> None:
    """JSON: a 400 naming the parameter. SVG: a 200 image naming it."""
    public_id = await share_recent(connected)
    response = await connected.client.get(f"/p/{public_id}/recent.json?limit=11")
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert response.json()["message"].startswith("limit:")
    card = await connected.client.get(f"/p/{public_id}/recent.svg?limit=0")
    assert card.status_code == 200 and "Bad parameter: limit" in card.text


async def test_unknown_link(connected: Env) -> None:
    card = await connected.client.get("/p/AAAAAAAAAAAAAAAAAAAA/recent.svg")
    assert card.status_code == 200 and "Not found" in card.text
    assert (await connected.client.get("/p/AAAAAAAAAAAAAAAAAAAA/recent.json")).status_code == 404
