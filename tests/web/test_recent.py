"""The recently-played card over HTTP: behind the owner's consent, one Spotify call per TTL."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import pytest
from harness.app import SAME, Env, published
from harness.cards import png_of

from nowplaying.engine.recent import RECENT_TTL

pytestmark = pytest.mark.anyio


async def share_recent(env: Env) -> str:
    """Publish, turn the last-played setting on and grant the recently-played scope."""
    public_id = await env.publish()
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
    """JSON: a 400 naming the parameter. SVG: a 400 whose body is an image naming it."""
    public_id = await share_recent(connected)
    response = await connected.client.get(f"/p/{public_id}/recent.json?limit=11")
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert response.json()["message"].startswith("limit:")
    card = await connected.client.get(f"/p/{public_id}/recent.svg?limit=0")
    assert card.status_code == 400 and "Bad parameter: limit" in card.text
    assert card.headers["content-type"].startswith("image/svg+xml")


async def test_unknown_link(connected: Env) -> None:
    card = await connected.client.get("/p/AAAAAAAAAAAAAAAAAAAA/recent.svg")
    assert card.status_code == 200 and "Not found" in card.text
    assert (await connected.client.get("/p/AAAAAAAAAAAAAAAAAAAA/recent.json")).status_code == 404


async def test_the_recent_png_is_an_image_and_revalidates(connected: Env) -> None:
    public_id = await published(connected)
    first = await connected.client.get(f"/p/{public_id}/recent.png")
    png_of(first)  # not shared: an image that says so
    again = await connected.client.get(
        f"/p/{public_id}/recent.png", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
