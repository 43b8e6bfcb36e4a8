"""Link previews on the widget page (read by a real unfurler library) and ``/oembed``."""

from __future__ import annotations

import io
import urllib.parse
from html.parser import HTMLParser
from typing import Any

import extruct
import httpx
import pytest
from harness.app import ORIGIN, Env, published
from harness.helpers import fixture_json
from PIL import Image

from nowplaying.cards import png

pytestmark = pytest.mark.anyio
HOSTILE = '</title><script>alert(1)</script> "q" <b onload=x> & \u202eevil'


class Meta(HTMLParser):
    """Every ``<meta name=...>`` and ``<link rel=alternate>`` of a page (extruct reads og: only)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.names: dict[str, str] = {}
        self.alternates: list[dict[str, str]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "meta" and "name" in values:
            self.names[values["name"]] = values.get("content", "")
        if tag == "link" and values.get("rel") == "alternate":
            self.alternates.append(values)


def opengraph(html: str, url: str) -> dict[str, str]:
    """The page's Open Graph properties as extruct (Scrapinghub's unfurler) reads them."""
    found = extruct.extract(html, base_url=url, syntaxes=["opengraph"], uniform=False)
    assert len(found["opengraph"]) == 1
    return dict(found["opengraph"][0]["properties"])


async def playing(env: Env, item: int | dict[str, Any] = 1) -> str:
    player = env.sim.player("demo")
    if isinstance(item, dict):
        player.set_playlist([item])
        player.play(0, progress_ms=3000)
    else:
        player.play(item, progress_ms=3000)
    return await published(env)


async def test_a_pasted_link_unfurls_to_what_plays(connected: Env) -> None:
    public_id = await playing(connected)
    state = (await connected.client.get(f"/p/{public_id}.json")).json()
    page = await connected.client.get(f"/p/{public_id}?theme=dark")
    assert page.status_code == 200
    og = opengraph(page.text, str(page.url))
    assert og["og:title"] == f"{state['artist']} \u2013 {state['title']}"
    assert og["og:description"].startswith("Now playing on Spotify")
    assert og["og:url"] == f"{ORIGIN}/p/{public_id}?theme=dark"
    assert (og["og:image:width"], og["og:image:height"]) == ("1200", "630")
    image_url = og["og:image"]
    assert image_url.startswith(f"{ORIGIN}/p/{public_id}/social.png?theme=dark&v=")
    image = await connected.client.get(image_url)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (1200, 630)
    meta = Meta(page.text)
    assert meta.names["twitter:card"] == "summary_large_image"
    assert meta.names["twitter:image"] == image_url
    assert meta.names["theme-color"] == "#1db954"
    [discovery] = meta.alternates
    assert discovery["type"] == "application/json+oembed"
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(discovery["href"]).query)
    assert query == {"url": [og["og:url"]], "format": ["json"]}


async def test_a_new_track_is_a_new_preview_image(connected: Env) -> None:
    """Crawlers keep an image by its URL: another track, another og:image URL."""
    public_id = await playing(connected, 1)
    first = opengraph((await connected.client.get(f"/p/{public_id}")).text, ORIGIN)
    await playing(connected, 2)
    second = opengraph((await connected.client.get(f"/p/{public_id}")).text, ORIGIN)
    assert first["og:title"] != second["og:title"]
    assert first["og:image"] != second["og:image"]


async def test_hostile_text_stays_text_in_the_preview(connected: Env) -> None:
    item: dict[str, Any] = fixture_json("currently-playing-track.json")["item"]
    item["name"] = HOSTILE
    public_id = await playing(connected, item)
    page = await connected.client.get(f"/p/{public_id}")
    assert "<script>alert" not in page.text and "onload=x>" not in page.text
    og = opengraph(page.text, ORIGIN)
    assert og["og:title"].endswith('</title><script>alert(1)</script> "q" <b onload=x> & evil')
    assert "\u202e" not in og["og:title"]


async def test_no_preview_for_a_bad_option_or_an_unknown_link(connected: Env) -> None:
    public_id = await playing(connected)
    bad = await connected.client.get(f"/p/{public_id}?theme=neon")
    assert bad.status_code == 400 and "og:title" not in bad.text
    unknown = await connected.client.get("/p/" + "x" * 20)
    assert unknown.status_code == 404 and "og:title" not in unknown.text


async def oembed(env: Env, **params: str) -> httpx.Response:
    return await env.client.get("/oembed", params=params)


async def test_oembed_answers_a_rich_iframe(connected: Env) -> None:
    public_id = await playing(connected)
    link = f"{ORIGIN}/p/{public_id}?theme=apple"
    response = await oembed(connected, url=link, format="json")
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    data = response.json()
    assert data["version"] == "1.0" and data["type"] == "rich"
    assert data["provider_url"] == ORIGIN and data["provider_name"] == "nowplaying"
    card = await connected.client.get(f"/p/{public_id}.svg?theme=apple")
    width, height = png.size_of(card.text)  # the frame is the card's size
    assert (data["width"], data["height"]) == (width, height)
    assert data["html"].startswith(f'<iframe src="{ORIGIN}/p/{public_id}?theme=apple"')
    assert f'width="{width}" height="{height}"' in data["html"]
    assert data["thumbnail_url"].startswith(f"{ORIGIN}/p/{public_id}/social.png")
    assert (data["thumbnail_width"], data["thumbnail_height"]) == (1200, 630)
    assert data["title"] == opengraph((await connected.client.get(link)).text, link)["og:title"]


async def test_oembed_honours_maxwidth_and_maxheight(connected: Env) -> None:
    public_id = await playing(connected)
    link = f"{ORIGIN}/p/{public_id}"
    narrow = (await oembed(connected, url=link, maxwidth="300")).json()
    assert narrow["width"] == 300 and narrow["height"] <= 120
    assert "width=300" in narrow["html"]
    low = (await oembed(connected, url=link, maxheight="100")).json()
    assert low["height"] <= 100 and "size=compact" in low["html"]
    both = (await oembed(connected, url=link, maxwidth="1000", maxheight="1000")).json()
    assert (both["width"], both["height"]) == (420, 120)
    assert (await oembed(connected, url=link, maxwidth="100")).status_code == 404
    assert (await oembed(connected, url=link, maxheight="10")).status_code == 404


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"url": "https://elsewhere.test/p/PUBLIC"}, 404),
        ({"url": f"{ORIGIN}/p/PUBLIC.svg"}, 404),
        ({"url": f"{ORIGIN}/"}, 404),
        ({"url": f"{ORIGIN}/p/{'x' * 20}"}, 404),
        ({"url": f"{ORIGIN}/p/PUBLIC", "format": "xml"}, 501),
        ({}, 400),
        ({"url": f"{ORIGIN}/p/PUBLIC", "maxwidth": "wide"}, 400),
        ({"url": f"{ORIGIN}/p/PUBLIC?theme=neon"}, 400),
    ],
)
async def test_oembed_refuses_with_a_message(
    connected: Env, params: dict[str, str], status: int
) -> None:
    public_id = await playing(connected)
    sent = {k: v.replace("PUBLIC", public_id) for k, v in params.items()}
    response = await oembed(connected, **sent)
    assert response.status_code == status
    assert response.json()["message"]


async def test_oembed_is_in_the_openapi_document(env: Env) -> None:
    paths = (await env.client.get("/openapi.json")).json()["paths"]
    assert set(paths["/oembed"]["get"]["responses"]) >= {"200", "400", "404", "501"}
