"""The PNG cards over HTTP: the same looks and caching rules as the SVG card."""

from __future__ import annotations

import io

import httpx
import pytest
from harness.app import Env, published
from PIL import Image

from nowplaying.cards import png

pytestmark = pytest.mark.anyio


def png_of(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["access-control-allow-origin"] == "*"
    im = Image.open(io.BytesIO(response.content))
    assert im.format == "PNG"
    return im


async def test_the_png_card_is_the_svg_card_at_twice_its_size(connected: Env) -> None:
    connected.sim.player("demo").play(1, progress_ms=3000)
    public_id = await published(connected)
    for query, width in (("", 420), ("?theme=dark&width=520", 520), ("?size=compact", None)):
        svg = await connected.client.get(f"/p/{public_id}.svg{query}")
        size = png.size_of(svg.text)
        assert width is None or size[0] == width
        im = png_of(await connected.client.get(f"/p/{public_id}.png{query}"))
        assert im.size == (size[0] * 2, size[1] * 2)


async def test_the_social_png_is_1200_by_630(connected: Env) -> None:
    public_id = await published(connected)
    im = png_of(await connected.client.get(f"/p/{public_id}/social.png?theme=dark"))
    assert im.size == (1200, 630)


async def test_a_png_revalidates_and_is_drawn_once_per_look_per_step(connected: Env) -> None:
    """ETag and 304 as the SVG; many viewers in one step cost one rasterisation per look."""
    connected.sim.player("demo").play(1, progress_ms=3000)
    public_id = await published(connected)
    cards = connected.services.cards
    first = await connected.client.get(f"/p/{public_id}.png")
    assert cards.counts["image_render"] == 1
    for _ in range(5):
        again = await connected.client.get(f"/p/{public_id}.png")
        assert again.content == first.content
    assert cards.counts["image_render"] == 1 and cards.counts["image_hit"] == 5
    etag = first.headers["etag"]
    not_modified = await connected.client.get(
        f"/p/{public_id}.png", headers={"If-None-Match": etag}
    )
    assert not_modified.status_code == 304 and not_modified.content == b""
    await connected.client.get(f"/p/{public_id}.png?theme=dark")
    assert cards.counts["image_render"] == 2  # another look, drawn once
    svg = await connected.client.get(f"/p/{public_id}.svg")
    assert first.headers["cache-control"] == svg.headers["cache-control"]


async def test_a_png_is_drawn_again_only_when_its_svg_changes(connected: Env) -> None:
    """The SVG is drawn each card step, the PNG only when the SVG's bytes change (a paused
    track's card holds still; playing, the progress moves every 5 s)."""
    player = connected.sim.player("demo")
    player.play(1, progress_ms=3000)
    player.pause()
    public_id = await published(connected)
    cards = connected.services.cards
    first = await connected.client.get(f"/p/{public_id}.png")
    svg_renders = cards.counts["render"]
    await connected.clock.advance(3)
    again = await connected.client.get(f"/p/{public_id}.png")
    assert cards.counts["render"] > svg_renders  # a new step: the SVG was drawn again
    assert again.content == first.content and cards.counts["image_render"] == 1
    player.resume()
    await connected.services.runtime.hub.forget("demo")
    await connected.clock.advance(6)
    moved = await connected.client.get(f"/p/{public_id}.png")
    assert moved.content != first.content and cards.counts["image_render"] == 2


async def test_a_bad_parameter_or_unknown_link_is_still_an_image(connected: Env) -> None:
    public_id = await published(connected)
    bad = png_of(await connected.client.get(f"/p/{public_id}.png?theme=neon"))
    assert bad.size[0] > 0
    png_of(await connected.client.get("/p/" + "x" * 20 + ".png"))
    png_of(await connected.client.get("/p/" + "x" * 20 + "/social.png"))


async def test_the_recent_png_is_an_image_and_revalidates(connected: Env) -> None:
    public_id = await published(connected)
    first = await connected.client.get(f"/p/{public_id}/recent.png")
    png_of(first)  # not shared: an image that says so
    again = await connected.client.get(
        f"/p/{public_id}/recent.png", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304


async def test_the_png_routes_are_in_the_openapi_document(env: Env) -> None:
    paths = (await env.client.get("/openapi.json")).json()["paths"]
    for path in ("/p/{public_id}.png", "/p/{public_id}/social.png", "/p/{public_id}/recent.png"):
        assert "image/png" in paths[path]["get"]["responses"]["200"]["content"]
