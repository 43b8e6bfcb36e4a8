"""The PNG card beside the SVG card as Chromium draws it: the same picture, within a tolerance."""

from __future__ import annotations

import base64
import io

import pytest
from harness.cards import card
from PIL import Image, ImageChops
from playwright.sync_api import Browser

from nowplaying.cards import png
from nowplaying.cards.card import look
from nowplaying.cards.options import CardOptions
from nowplaying.cards.themes import Theme

TOLERANCE = 0.05
"""Mean difference per pixel (0-1) allowed between resvg's PNG and Chromium's drawing (measured
0.006-0.043 across the themes). What is left is antialiasing, the label's uppercase (resvg has
no ``text-transform``) and the font each picks for ``system-ui`` (Chromium: DejaVu Sans; resvg:
the next family of the stack, Liberation Sans); a lost cover costs 0.064."""
INK = (0.5, 1.5)
"""The title's ink in our PNG over Chromium's (measured 0.68-0.88: DejaVu is the wider face)."""


def chromium_png(browser: Browser, svg: str) -> Image.Image:
    width, height = png.size_of(svg)
    page = browser.new_page(viewport={"width": width, "height": height})
    try:
        uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
        page.set_content(
            '<html><body style="margin:0;background:#fff">'
            f'<img src="{uri}" width="{width}" height="{height}"></body></html>'
        )
        page.wait_for_function("document.images[0].complete")
        shot = page.screenshot(animations="disabled")
    finally:
        page.close()
    return Image.open(io.BytesIO(shot)).convert("RGB")


def ours(svg: str) -> Image.Image:
    """Our PNG at the card's size, on the page's white (as Chromium's screenshot is)."""
    im = Image.open(io.BytesIO(png.rasterise(svg, scale=1.0))).convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", im.size, "#ffffff"), im).convert("RGB")


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a, b).convert("L").histogram()
    return sum(i * n for i, n in enumerate(diff)) / (a.size[0] * a.size[1]) / 255


def title_ink(theme: Theme, drawn: Image.Image, untitled: Image.Image) -> int:
    """Pixels of the title's line that differ clearly from the same card without a title."""
    lay = look(CardOptions(theme=theme)).layout
    band = (0, lay.title_y - lay.title_size, drawn.size[0], lay.title_y + 3)
    diff = ImageChops.difference(drawn.crop(band), untitled.crop(band)).convert("L")
    return diff.point(lambda v: 255 if v > 60 else 0).histogram()[255]


@pytest.mark.browser
@pytest.mark.parametrize("theme", list(Theme))
def test_the_png_matches_chromiums_drawing_of_the_svg(browser: Browser, theme: Theme) -> None:
    svg = card("Midnight City", theme=theme)
    mine, theirs = ours(svg), chromium_png(browser, svg)
    assert mine.size == theirs.size
    assert mean_difference(mine, theirs) <= TOLERANCE
    untitled = ours(svg.replace(">Midnight City<", "><"))
    ratio = title_ink(theme, mine, untitled) / title_ink(theme, theirs, untitled)
    assert INK[0] <= ratio <= INK[1]


@pytest.mark.browser
def test_the_tolerance_catches_a_lost_cover_or_title(browser: Browser) -> None:
    svg = card("Midnight City", theme=Theme.DARK)
    theirs = chromium_png(browser, svg)
    no_cover = ours(svg.replace('href="data:image/png', 'href="data:image/x'))
    assert mean_difference(no_cover, theirs) > TOLERANCE
    untitled = ours(svg.replace(">Midnight City<", "><"))
    assert (
        title_ink(Theme.DARK, untitled, untitled) / title_ink(Theme.DARK, theirs, untitled) < INK[0]
    )
