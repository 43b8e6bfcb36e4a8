"""The stream overlay page and the drop-in script: their routes, options, headers and size."""

from __future__ import annotations

import gzip

import pytest
from harness.app import ORIGIN, Env

from nowplaying.cards import themes
from nowplaying.cards.options import CardOptions, OverlayOptions
from nowplaying.cards.themes import THEMES, Theme
from nowplaying.web import dropin, styles
from nowplaying.web.pages import EMBED_CSP

pytestmark = pytest.mark.anyio
EMBED_JS_LIMIT = 6 * 1024  # issue 13: the drop-in embed is at most 6 KB gzipped


async def test_overlay_page_carries_its_options(connected: Env) -> None:
    """/p/{id}/overlay: framable anywhere, no cookie needed, options as the widget's data."""
    public_id = await connected.publish()
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
    public_id = await connected.publish()
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
        ("theme=%3Cscript%3E", "theme"),
        ("accent=zzz", "accent"),
        ("radius=999", "radius"),
    ],
)
async def test_a_bad_overlay_parameter_is_a_400_naming_it(
    connected: Env, query: str, named: str
) -> None:
    public_id = await connected.publish()
    response = await connected.client.get(f"/p/{public_id}/overlay?{query}")
    assert response.status_code == 400
    assert named in response.text
    assert "<script>" not in response.text


async def test_overlay_of_an_unknown_link_is_a_404(connected: Env) -> None:
    response = await connected.client.get("/p/not-a-real-id-0000000/overlay")
    assert response.status_code == 404


async def test_embed_js_is_small_cross_origin_and_revalidates(connected: Env) -> None:
    """The script: JavaScript, readable from any origin, under 6 KB gzipped, ETag/304."""
    public_id = await connected.publish()
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


def test_overlay_options_are_the_cards_and_its_own() -> None:
    """The overlay takes every card option (one model) plus its own, dark by default."""
    assert set(CardOptions.model_fields) < set(OverlayOptions.model_fields)
    assert OverlayOptions().theme is Theme.DARK
    assert {"layout", "position", "fade", "paused"} <= set(OverlayOptions.model_fields)


async def test_embed_page_takes_the_card_options(connected: Env) -> None:
    """/p/{id}?theme=...&accent=...: the validated options become the widget's data."""
    public_id = await connected.publish()
    page = (
        await connected.client.get(
            f"/p/{public_id}?theme=karaoke&accent=F0a&radius=4&width=300&hide=artist,cover"
            "&transparent=1&idle=text&idle_text=Quiet%20now&v=2&size=compact"
        )
    ).text
    for attr in (
        'data-theme="karaoke"',
        'data-accent="#ff00aa"',
        'data-radius="4"',
        'data-width="300"',
        'data-hide="artist,cover"',
        'data-transparent="true"',
        'data-idle="text"',
        'data-idle-text="Quiet now"',
        'data-size="compact"',
    ):
        assert attr in page
    bad = await connected.client.get(f"/p/{public_id}?accent=nothex")
    assert bad.status_code == 400
    assert "accent" in bad.text


async def test_themes_css_is_generated_from_the_theme_set(connected: Env) -> None:
    """/static/themes.css: every theme, for pages and for the element's host, ETag/304."""
    response = await connected.client.get("/static/themes.css")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/css; charset=utf-8"
    css = response.text
    for theme in Theme:
        assert f'.np[data-theme="{theme}"],:host([theme="{theme}"]){{--np-bg:' in css
        assert f"--np-cover:{THEMES[theme].layout.cover};" in css
    assert css.startswith(themes.stylesheet(styles.selector))
    assert '.np[data-size="compact"]{--np-width-px:320px;' in css
    again = await connected.client.get(
        "/static/themes.css", headers={"If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304


async def test_owner_page_offers_a_snippet_for_each_way_of_embedding(connected: Env) -> None:
    """iframe, embed.js, the element, a <picture> with light/dark sources, the overlay URL."""
    public_id = await connected.publish()
    home = (await connected.client.get("/")).text
    page = f"{ORIGIN}/p/{public_id}"
    for text in (
        f"&lt;iframe src=&#34;{page}?theme=auto&#34;",
        f"&lt;script src=&#34;{page}/embed.js&#34; data-theme=&#34;auto&#34; async&gt;",
        f"&lt;now-playing src=&#34;{page}&#34; theme=&#34;auto&#34;&gt;",
        "&lt;source media=&#34;(prefers-color-scheme: dark)&#34; "
        f"srcset=&#34;{page}.svg?theme=dark&#34;&gt;",
        f"&lt;img src=&#34;{page}.svg?theme=light&#34;",
        f"{page}/overlay?theme=auto&amp;fade=10",
    ):
        assert text in home


async def test_openapi_describes_the_overlay_and_the_script(connected: Env) -> None:
    """The overlay's parameters (the card's and its own) and embed.js are in /openapi.json."""
    doc = (await connected.client.get("/openapi.json")).json()
    overlay = doc["paths"]["/p/{public_id}/overlay"]["get"]
    names = {p["name"] for p in overlay["parameters"]}
    assert set(OverlayOptions.model_fields) | {"public_id"} == names
    layout = next(p for p in overlay["parameters"] if p["name"] == "layout")
    assert layout["schema"]["enum"] == ["canvas", "strip"]
    assert "/p/{public_id}/embed.js" in doc["paths"]
    embed = {p["name"] for p in doc["paths"]["/p/{public_id}"]["get"]["parameters"]}
    assert set(CardOptions.model_fields) < embed
