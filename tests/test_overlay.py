"""The stream overlay page and the drop-in script: their routes, options, headers and size."""

from __future__ import annotations

import gzip

import pytest

from nowplaying.web import dropin
from nowplaying.web.overlay import OverlayOptions
from nowplaying.web.pages import EMBED_CSP
from tests.conftest import Env
from tests.test_public import publish

pytestmark = pytest.mark.anyio
EMBED_JS_LIMIT = 6 * 1024  # issue 13: the drop-in embed is at most 6 KB gzipped


async def test_overlay_page_carries_its_options(connected: Env) -> None:
    """/p/{id}/overlay: framable anywhere, no cookie needed, options as the widget's data."""
    public_id = await publish(connected)
    connected.client.cookies.clear()
    response = await connected.client.get(
        f"/p/{public_id}/overlay?layout=strip&position=top-right&fade=8&paused=show&theme=light"
    )
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == EMBED_CSP
    page = response.text
    assert 'class="overlay overlay--strip overlay--top-right"' in page
    assert 'data-overlay=""' in page
    assert 'data-fade="8"' in page
    assert 'data-paused="show"' in page
    assert 'data-theme="light"' in page
    assert f'data-events="/p/{public_id}/events"' in page
    assert "<style" not in page and "style=" not in page


async def test_overlay_defaults(connected: Env) -> None:
    public_id = await publish(connected)
    page = (await connected.client.get(f"/p/{public_id}/overlay")).text
    assert 'class="overlay overlay--canvas overlay--bottom-left"' in page
    assert 'data-fade="0"' in page
    assert 'data-paused="hide"' in page


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("fade=-1", "fade"),
        ("fade=abc", "fade"),
        ("fade=3601", "fade"),
        ("layout=huge", "layout"),
        ("position=middle", "position"),
        ("paused=maybe", "paused"),
        ("fdae=3", "fdae"),
        ("theme=%3Cscript%3E", "theme"),
    ],
)
async def test_a_bad_overlay_parameter_is_a_400_naming_it(
    connected: Env, query: str, named: str
) -> None:
    public_id = await publish(connected)
    response = await connected.client.get(f"/p/{public_id}/overlay?{query}")
    assert response.status_code == 400
    assert named in response.text
    assert "<script>" not in response.text


async def test_overlay_of_an_unknown_link_is_a_404(connected: Env) -> None:
    response = await connected.client.get("/p/not-a-real-id-0000000/overlay")
    assert response.status_code == 404


async def test_embed_js_is_small_cross_origin_and_revalidates(connected: Env) -> None:
    """The script: JavaScript, readable from any origin, under 6 KB gzipped, ETag/304."""
    public_id = await publish(connected)
    connected.client.cookies.clear()
    response = await connected.client.get(f"/p/{public_id}/embed.js")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    assert 'customElements.define("now-playing"' in response.text
    assert len(gzip.compress(response.content, compresslevel=6)) <= EMBED_JS_LIMIT
    assert len(response.content) < len(dropin.SOURCE.read_bytes())  # minified
    again = await connected.client.get(
        f"/p/{public_id}/embed.js", headers={"If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""


async def test_embed_js_of_an_unknown_link_is_a_404(connected: Env) -> None:
    response = await connected.client.get("/p/not-a-real-id-0000000/embed.js")
    assert response.status_code == 404


def test_overlay_options_are_one_model() -> None:
    """The page's defaults are the model's; nothing but the model validates."""
    assert OverlayOptions().model_dump() == {
        "theme": "dark",
        "layout": "canvas",
        "position": "bottom-left",
        "fade": 0,
        "paused": "hide",
    }
