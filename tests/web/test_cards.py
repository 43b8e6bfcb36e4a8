"""The card over HTTP: query options, a bad parameter still an image, revalidation while playing."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import httpx
import pytest
from harness.app import Env, published

pytestmark = pytest.mark.anyio
NS = "{http://www.w3.org/2000/svg}"


def svg_of(response: httpx.Response) -> ET.Element:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    return ET.fromstring(response.text)


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("theme=neon", "theme"),
        ("bg=red", "bg"),
        ("width=5000", "width"),
        ("width=abc", "width"),
        ("radius=-1", "radius"),
        ("hide=cover,lyrics", "hide"),
        ("idle=maybe", "idle"),
        ("transparent=perhaps", "transparent"),
        ("idle_text=" + "x" * 61, "idle_text"),
    ],
)
async def test_a_bad_parameter_is_an_image_that_names_it(
    connected: Env, query: str, param: str
) -> None:
    """200, image/svg+xml, the parameter named in the picture and its alt text; no Spotify call."""
    public_id = await published(connected)
    connected.sim.reset_calls()
    root = svg_of(await connected.client.get(f"/p/{public_id}.svg?{query}"))
    assert f"Bad parameter: {param}" in "".join(root.itertext())
    assert "bad-option" in (root.get("class") or "")
    assert connected.sim.calls["currently-playing"] == 0


async def test_unknown_parameters_are_ignored(connected: Env) -> None:
    """A cache buster (?v=2) changes nothing."""
    public_id = await published(connected)
    plain = await connected.client.get(f"/p/{public_id}.svg")
    busted = await connected.client.get(f"/p/{public_id}.svg?v=2&cache=now")
    assert busted.text == plain.text


async def test_options_shape_the_card(connected: Env) -> None:
    """Width, colours, transparency and hidden parts arrive in the card; no cover, no fetch."""
    connected.sim.player("demo").play(1, progress_ms=3000)
    public_id = await published(connected)
    connected.sim.reset_calls()
    query = "theme=dark&width=520&bg=%230d1117&text=e6edf3&accent=f0a&radius=4&hide=cover,progress"
    response = await connected.client.get(f"/p/{public_id}.svg?{query}")
    root = svg_of(response)
    assert root.get("width") == "520"
    style = "".join(s.text or "" for s in root.iter(f"{NS}style"))
    assert ".bg{fill:#0d1117" in style and ".title{fill:#e6edf3}" in style
    assert ".dot{fill:#ff00aa}" in style
    assert 'rx="4"' in response.text
    assert root.find(f"{NS}image") is None and 'class="track"' not in response.text
    assert connected.sim.calls["cover"] == 0
    clear = svg_of(await connected.client.get(f"/p/{public_id}.svg?transparent=1"))
    assert ".bg{fill:none;stroke:none}" in "".join(s.text or "" for s in clear.iter(f"{NS}style"))


async def test_idle_text_and_hidden_idle_card(connected: Env) -> None:
    """While nothing plays: the owner's text, or a 1x1 empty image."""
    connected.sim.player("demo").stop()
    public_id = await published(connected)
    text = svg_of(await connected.client.get(f"/p/{public_id}.svg?idle=text&idle_text=Offline"))
    assert "Offline" in "".join(text.itertext())
    hidden = svg_of(await connected.client.get(f"/p/{public_id}.svg?idle=hide"))
    assert (hidden.get("width"), hidden.get("height")) == ("1", "1")
    assert not list(hidden.iter(f"{NS}text"))


async def test_the_card_revalidates_while_a_track_plays(connected: Env) -> None:
    """Within one progress step the ETag holds (304); the next step is a new card."""
    connected.sim.player("demo").play(1, progress_ms=1000)
    public_id = await published(connected)
    first = await connected.client.get(f"/p/{public_id}.svg")
    etag = first.headers["etag"]
    await connected.clock.advance(3.0)  # 4.0 s into the track: the same 5 s step
    same = await connected.client.get(f"/p/{public_id}.svg", headers={"If-None-Match": etag})
    assert same.status_code == 304 and same.headers["etag"] == etag
    await connected.clock.advance(1.5)  # 5.5 s: the next step, drawn at most 5 s late
    moved = await connected.client.get(f"/p/{public_id}.svg", headers={"If-None-Match": etag})
    assert moved.status_code == 200
    assert moved.headers["etag"] != etag


async def test_a_real_change_is_a_new_card_at_once(connected: Env) -> None:
    """A skip within the same step is not hidden by the step."""
    connected.sim.player("demo").play(1, progress_ms=1000)
    public_id = await published(connected)
    etag = (await connected.client.get(f"/p/{public_id}.svg")).headers["etag"]
    connected.sim.player("demo").play(2, progress_ms=1000)
    await connected.services.runtime.hub.forget("demo")
    after = await connected.client.get(f"/p/{public_id}.svg", headers={"If-None-Match": etag})
    assert after.status_code == 200 and after.headers["etag"] != etag
