"""The embed's looks and the drop-in element in Chromium: every theme of the embed page wears
the values of the one theme set, ``auto`` follows the system, and ``<now-playing>`` works on
another origin under a strict CSP, themed by the host page's own CSS."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from harness.browser import Shared
from playwright.sync_api import Page, expect

from nowplaying.cards.themes import DARK, THEMES, Cover, Theme

pytestmark = pytest.mark.browser

_PROPS = """e => { const s = getComputedStyle(e); return {
  bg: s.getPropertyValue('--np-bg').trim(), accent: s.getPropertyValue('--np-accent').trim(),
  background: s.backgroundColor, cover: e.dataset.cover, times: e.dataset.times,
  title: getComputedStyle(e.querySelector('.np__title')).fontSize,
  art: getComputedStyle(e.querySelector('.np__art')).display,
  clock: getComputedStyle(e.querySelector('.np__times')).display }; }"""


@pytest.fixture(scope="module")
def playing(shared: Shared) -> Shared:
    shared.play(0)
    return shared


@pytest.mark.parametrize("theme", list(Theme))
def test_each_theme_of_the_embed(page: Page, playing: Shared, theme: Theme) -> None:
    """/p/{id}?theme=X: the palette, type size and cover layout of theme X from themes.py, in
    an iframe of the SVG card's size without scrollbars."""
    spec = THEMES[theme]
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": spec.layout.width, "height": spec.layout.height})
    page.goto(f"{playing.link}?theme={theme}")
    widget = page.locator("#np-widget")
    expect(widget.locator(".np__title")).to_have_text("Hoppípolla")
    palette = dict(spec.palette.items())
    if theme is Theme.COVER:  # the cover's colours (test_cover_theme_browser.py), once painted
        page.wait_for_function("e => e.dataset.painted", arg=widget.element_handle())
        palette = httpx.get(f"{playing.link}/colours", timeout=10).json()["properties"]
    props = widget.evaluate(_PROPS)
    assert props["bg"] == palette["--np-bg"]
    assert props["accent"] == palette["--np-accent"]
    assert props["background"] not in ("rgba(0, 0, 0, 0)", "transparent")
    assert props["title"] == f"{spec.layout.title_size}px"
    assert props["cover"] == str(spec.layout.cover)
    assert props["art"] == ("none" if spec.layout.cover is Cover.NONE else "grid")
    assert props["clock"] == ("flex" if spec.layout.times else "none")
    overflow = page.evaluate(
        "() => [document.documentElement.scrollWidth - innerWidth,"
        " document.documentElement.scrollHeight - innerHeight]"
    )
    assert overflow == [0, 0]


def test_auto_follows_the_system(page: Page, playing: Shared) -> None:
    """theme=auto: light colours, and the dark palette when the system prefers dark."""
    page.emulate_media(color_scheme="dark")
    page.goto(f"{playing.link}?theme=auto")
    widget = page.locator("#np-widget")
    expect(widget.locator(".np__title")).to_have_text("Hoppípolla")
    assert widget.evaluate(_PROPS)["bg"] == DARK.bg
    page.emulate_media(color_scheme="light")
    assert widget.evaluate(_PROPS)["bg"] == THEMES[Theme.AUTO].palette.bg


def test_query_options_reach_the_widget(page: Page, playing: Shared) -> None:
    """accent, radius and hide= from the query string are applied (validated by the model)."""
    page.goto(f"{playing.link}?theme=dark&accent=ff0000&radius=3&hide=cover,progress")
    widget = page.locator("#np-widget")
    expect(widget.locator(".np__title")).to_have_text("Hoppípolla")
    assert widget.evaluate("e => getComputedStyle(e).borderTopLeftRadius") == "3px"
    assert widget.evaluate(_PROPS)["accent"] == "#ff0000"
    expect(widget.locator(".np__art")).to_be_hidden()
    expect(widget.locator(".np__progress")).to_be_hidden()


def _csp(base: str) -> str:
    """A strict policy that allows this page's own styles and the widget's host, nothing else."""
    return (
        f"default-src 'none'; script-src {base}; style-src 'self' {base}; "
        f"connect-src {base}; img-src 'self' {base}; base-uri 'none'"
    )


_VIOLATIONS = (
    "window.__violations = [];"
    "document.addEventListener('securitypolicyviolation',"
    " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
)


def _blog(folder: Path, name: str, base: str, head: str, body: str) -> None:
    """A page of the other origin under :func:`_csp` for ``base``."""
    (folder / "favicon.ico").write_bytes(b"")
    (folder / name).write_text(
        "<!doctype html><html><head>"
        f'<meta http-equiv="Content-Security-Policy" content="{_csp(base)}">'
        f'<link rel="icon" href="favicon.ico">{head}<title>my blog</title></head>'
        f"<body>{body}</body></html>",
        encoding="utf-8",
    )


def test_custom_element_on_another_origin_under_a_strict_csp(
    page: Page, playing: Shared, other_origin: tuple[str, Path]
) -> None:
    """<now-playing> on a blog with a strict CSP: live, themed by the blog's CSS, no violation."""
    playing.play(0)
    origin, folder = other_origin
    (folder / "blog.css").write_text("now-playing { --np-accent: #ff00aa; --np-radius-px: 2px; }")
    _blog(
        folder,
        "blog.html",
        playing.base,
        '<link rel="stylesheet" href="blog.css">',
        f'<h1>My blog</h1><now-playing src="{playing.link}" theme="dark"></now-playing>'
        f'<script src="{playing.link}/embed.js" async></script>',
    )
    page.add_init_script(_VIOLATIONS)
    page.goto(f"{origin}/blog.html")
    widget = page.locator("now-playing .np")
    expect(widget.locator(".np__title")).to_have_text("Hoppípolla")
    assert page.locator("now-playing").count() == 1  # the page's own; none added
    page.wait_for_function(
        "() => { const i = document.querySelector('now-playing').shadowRoot"
        ".querySelector('img.np__cover'); return i && i.complete && i.naturalWidth > 0; }"
    )
    props = widget.evaluate(_PROPS)
    assert props["accent"] == "#ff00aa"  # the host page's CSS beats the theme
    assert props["bg"] == THEMES[Theme.DARK].palette.bg
    assert widget.evaluate("e => getComputedStyle(e).borderTopLeftRadius") == "2px"
    playing.control("users/demo/player/skip")
    expect(widget.locator(".np__title")).to_have_text('<Intro> & "Outro"', timeout=15_000)
    assert page.evaluate("window.__violations") == []


def test_the_script_alone_places_the_element(
    page: Page, playing: Shared, other_origin: tuple[str, Path]
) -> None:
    """Only <script src=".../embed.js" data-theme=...>: the element, with the script's data-*
    as its attributes, appears where the script stands."""
    playing.play(0)
    origin, folder = other_origin
    _blog(
        folder,
        "bare.html",
        playing.base,
        "",
        f'<p id="before">Listening to</p><script src="{playing.link}/embed.js" async'
        ' data-theme="karaoke" data-idle-text="Quiet"></script>',
    )
    page.add_init_script(_VIOLATIONS)
    page.goto(f"{origin}/bare.html")
    expect(page.locator("now-playing .np__title")).to_have_text("Hoppípolla")
    assert page.evaluate("document.querySelector('#before + script + now-playing') !== null")
    placed = page.locator("now-playing")
    assert (placed.get_attribute("theme"), placed.get_attribute("idle-text")) == (
        "karaoke",
        "Quiet",
    )
    assert (
        page.locator("now-playing .np").evaluate(_PROPS)["bg"] == THEMES[Theme.KARAOKE].palette.bg
    )
    assert page.evaluate("window.__violations") == []


def test_one_live_region_alt_text_and_reduced_motion(page: Page, playing: Shared) -> None:
    """The widget has one live region, not nested; the cover has alt text; reduced motion
    stops the equalizer and the progress animation."""
    page.emulate_media(reduced_motion="reduce")
    page.goto(f"{playing.link}?theme=dark")
    widget = page.locator("#np-widget")
    expect(widget.locator(".np__title")).to_have_text("Hoppípolla")
    regions = page.evaluate(
        "() => [...document.querySelectorAll('[aria-live], [role=status], [role=alert], "
        "[role=log], [role=marquee], [role=timer]')].map(e => e.className)"
    )
    assert regions == ["np__announce"]
    expect(widget.locator(".np__announce")).to_have_text("Now playing: Hoppípolla by Sigur Rós")
    expect(widget.locator("img.np__cover")).to_have_attribute("alt", "Cover of Takk…")
    moving = widget.evaluate(
        "e => [getComputedStyle(e.querySelector('.np__bar')).animationName,"
        " getComputedStyle(e.querySelector('.np__progress-fill')).transitionDuration]"
    )
    assert moving == ["none", "0s"]
    page.emulate_media(reduced_motion="no-preference")
    assert widget.evaluate("e => getComputedStyle(e.querySelector('.np__bar')).animationName") == (
        "np-eq"
    )
