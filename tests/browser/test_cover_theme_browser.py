"""theme=cover in the live widget, in Chromium: the iframe page and ``<now-playing>`` take the
cover's muted background and vivid accent (the colours the cards draw with, every text readable
at 4.5:1), and change them when the track, and so the cover, changes; accent=cover in another
theme takes only the cover's accent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from harness.browser import Shared
from playwright.sync_api import Locator, Page, expect

from nowplaying.cards.colours import MIN_CONTRAST, contrast
from nowplaying.cards.themes import THEMES, Theme

pytestmark = pytest.mark.browser

_COLOURS = """e => { const s = getComputedStyle(e); const p = n => s.getPropertyValue(n).trim();
  return { bg: p('--np-bg'), fg: p('--np-fg'), muted: p('--np-muted'), accent: p('--np-accent'),
           painted: e.dataset.painted || null, cover: e.querySelector('img.np__cover').src }; }"""


def painted(widget: Locator, after: str | None = None) -> dict[str, Any]:
    """The widget's colours once it has painted the cover it shows (a cover other than
    ``after``)."""
    widget.page.wait_for_function(
        "([e, after]) => e.dataset.painted && e.dataset.painted !== after"
        " && e.dataset.painted === e.querySelector('img.np__cover').src",
        arg=[widget.element_handle(), after],
        timeout=15_000,
    )
    colours: dict[str, Any] = widget.evaluate(_COLOURS)
    return colours


def assert_the_covers_colours(colours: dict[str, Any], shared: Shared) -> None:
    """What the widget wears is what the server drew from this cover, and reads."""
    server = httpx.get(f"{shared.link}/colours", timeout=10).json()
    assert server["cover"] == colours["cover"]
    wanted = server["properties"]
    assert (colours["bg"], colours["fg"], colours["accent"]) == (
        wanted["--np-bg"],
        wanted["--np-fg"],
        wanted["--np-accent"],
    )
    assert colours["bg"] != THEMES[Theme.COVER].palette.bg  # the cover's, not the theme's own
    for text in ("fg", "muted", "accent"):
        assert contrast(colours[text], colours["bg"]) >= MIN_CONTRAST, (text, colours)


def test_the_page_takes_the_covers_colours_and_follows_the_track(
    page: Page, shared: Shared
) -> None:
    """/p/{id}?theme=cover: the cover's colours, new ones with the next track's cover."""
    first = shared.play(0)
    page.goto(f"{shared.link}?theme=cover")
    widget = page.locator("#np-widget")
    expect(widget.locator(".np__title")).to_have_text(first)
    before = painted(widget)
    assert_the_covers_colours(before, shared)
    second = shared.play(1)
    expect(widget.locator(".np__title")).to_have_text(second, timeout=15_000)
    after = painted(widget, after=before["painted"])
    assert after["cover"] != before["cover"] and after["bg"] != before["bg"]
    assert_the_covers_colours(after, shared)


def test_the_element_on_another_origin_takes_the_covers_colours(
    page: Page, shared: Shared, other_origin: tuple[str, Path]
) -> None:
    """<now-playing theme="cover"> on another origin (strict CSP): the same colours, changing
    with the cover; an owner's accent still wins."""
    first = shared.play(0)
    origin, folder = other_origin
    (folder / "favicon.ico").write_bytes(b"")
    csp = (
        f"default-src 'none'; script-src {shared.base}; style-src 'self' {shared.base}; "
        f"connect-src {shared.base}; img-src 'self' {shared.base}; base-uri 'none'"
    )
    (folder / "blog.html").write_text(
        f'<!doctype html><html><head><meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<link rel="icon" href="favicon.ico"><title>blog</title></head><body>'
        f'<now-playing src="{shared.link}" theme="cover"></now-playing>'
        f'<now-playing src="{shared.link}" theme="cover" accent="ff00aa"></now-playing>'
        f'<script src="{shared.link}/embed.js" async></script></body></html>',
        encoding="utf-8",
    )
    page.goto(f"{origin}/blog.html")
    plain, accented = page.locator("now-playing .np").nth(0), page.locator("now-playing .np").nth(1)
    expect(plain.locator(".np__title")).to_have_text(first)
    before = painted(plain)
    assert_the_covers_colours(before, shared)
    assert painted(accented)["accent"] == "#ff00aa"
    second = shared.play(1)
    expect(plain.locator(".np__title")).to_have_text(second, timeout=15_000)
    after = painted(plain, after=before["painted"])
    assert after["bg"] != before["bg"]
    assert_the_covers_colours(after, shared)


def assert_the_covers_accent(colours: dict[str, Any], shared: Shared, theme: Theme) -> None:
    """The widget wears ``theme``'s own background and text, and the accent the server drew
    from this cover for that theme (readable on its background)."""
    server = httpx.get(f"{shared.link}/colours?theme={theme}", timeout=10).json()
    assert server["cover"] == colours["cover"]
    own = THEMES[theme].palette
    assert colours["accent"] == server["properties"]["--np-accent"] != own.accent
    assert (colours["bg"], colours["fg"]) == (own.bg, own.fg)
    assert contrast(colours["accent"], colours["bg"]) >= MIN_CONTRAST


def test_accent_cover_takes_the_covers_accent_in_the_light_theme(
    page: Page, shared: Shared
) -> None:
    """/p/{id}?theme=light&accent=cover: the light theme with the cover's accent, a new accent
    with the next track's cover, the light background throughout."""
    first = shared.play(0)
    page.goto(f"{shared.link}?theme=light&accent=cover")
    widget = page.locator("#np-widget")
    expect(widget.locator(".np__title")).to_have_text(first)
    before = painted(widget)
    assert_the_covers_accent(before, shared, Theme.LIGHT)
    second = shared.play(1)
    expect(widget.locator(".np__title")).to_have_text(second, timeout=15_000)
    after = painted(widget, after=before["painted"])
    assert after["cover"] != before["cover"] and after["accent"] != before["accent"]
    assert_the_covers_accent(after, shared, Theme.LIGHT)


def test_accent_cover_in_auto_follows_a_dark_system(page: Page, shared: Shared) -> None:
    """/p/{id}?theme=auto&accent=cover on a dark system: the accent made for the dark theme's
    background."""
    first = shared.play(0)
    page.emulate_media(color_scheme="dark")
    page.goto(f"{shared.link}?theme=auto&accent=cover")
    widget = page.locator("#np-widget")
    expect(widget.locator(".np__title")).to_have_text(first)
    assert_the_covers_accent(painted(widget), shared, Theme.DARK)
