"""The PNG card: a faithful raster of the SVG, at twice its size and as a 1200x630 preview."""

from __future__ import annotations

import io

import pytest
from harness.cards import NOW, card, track
from PIL import Image, ImageChops

from nowplaying.cards import png
from nowplaying.cards.card import render_card
from nowplaying.cards.options import CardOptions
from nowplaying.cards.themes import THEMES, Theme
from nowplaying.schema import parse_state

HOSTILE = '</text><script>alert(1)</script> & "q" <b onload=x> \u202eevil'


def image(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    assert im.format == "PNG"
    return im.convert("RGBA")


def title_box(svg: str, im: Image.Image) -> tuple[int, int, int, int]:
    """The title's area in the PNG: from its x to the card's right padding, a line high."""
    layout = THEMES[Theme.LIGHT].layout
    s = im.size[0] / png.size_of(svg)[0]
    x = layout.pad + layout.art + layout.gap
    y = layout.title_y
    return (int(x * s), int((y - layout.title_size) * s), int((layout.width - 16) * s), int(y * s))


def inked(im: Image.Image, box: tuple[int, int, int, int], background: str = "#ffffff") -> int:
    """How many pixels of ``box`` differ from the background (the text's ink)."""
    area = im.crop(box).convert("RGB")
    plain = Image.new("RGB", area.size, background)
    diff = ImageChops.difference(area, plain).convert("L").point(lambda v: 255 if v > 40 else 0)
    return diff.histogram()[255]


@pytest.mark.parametrize("theme", list(Theme))
def test_every_theme_rasterises_at_twice_its_size(theme: Theme) -> None:
    svg = card(theme=theme)
    width, height = png.size_of(svg)
    im = image(png.rasterise(svg))
    assert im.size == (width * 2, height * 2)
    assert im.getchannel("A").getextrema()[1] == 255  # something opaque was drawn


def test_the_same_svg_gives_the_same_png() -> None:
    svg = card()
    assert png.rasterise(svg) == png.rasterise(svg)


@pytest.mark.parametrize(
    "title",
    ["Midnight City", "東京フラッシュ", "Ωμέγα Ünïcødé", "Ƒåñçÿ ŧęχŧ"],
)
def test_no_glyph_drops_out_of_the_title(title: str) -> None:
    """The title area has ink, and a different ink for a different title (no blank, no boxes
    shared by every unknown glyph): the installed fonts cover it."""
    svg = card(title)
    im = image(png.rasterise(svg, scale=1.0))
    box = title_box(svg, im)
    ink = inked(im, box)
    assert ink > 40 * len(title), f"{title!r}: only {ink} inked pixels"
    tofu = image(png.rasterise(card("\ue000" * len(title)), scale=1.0))
    assert ImageChops.difference(im.crop(box), tofu.crop(box)).convert("RGB").getbbox()


def test_the_ink_measure_can_fail() -> None:
    """The measure above tells a dot from a title: a dropped title would fail it."""
    svg = card(".")
    im = image(png.rasterise(svg, scale=1.0))
    assert 0 < inked(im, title_box(svg, im)) < 40


def test_hostile_text_is_drawn_as_text() -> None:
    """Markup in a title reaches the PNG as characters (the SVG escaped it), never as markup."""
    svg = card(HOSTILE)
    assert "<script>" not in svg
    im = image(png.rasterise(svg, scale=1.0))
    assert inked(im, title_box(svg, im)) > 400


def test_a_browser_weight_is_kept() -> None:
    """Weight 650 (the title) is drawn bold, as a browser draws it, not as regular."""
    bold = card(theme=Theme.LIGHT)
    regular = bold.replace("font-weight:650", "font-weight:400")
    assert png.rasterise(bold) != png.rasterise(regular)
    assert png.rasterise(bold) == png.rasterise(bold.replace("font-weight:650", "font-weight:700"))


@pytest.mark.parametrize("theme", [Theme.LIGHT, Theme.DARK, Theme.BLUR, Theme.BADGE])
def test_the_social_image_is_1200_by_630_on_the_cards_colour(theme: Theme) -> None:
    svg = card(theme=theme)
    im = image(png.social(svg))
    assert im.size == (png.SOCIAL_WIDTH, png.SOCIAL_HEIGHT)
    corner = im.getpixel((2, 2))
    assert isinstance(corner, tuple) and corner[3] == 255
    drawn = ImageChops.difference(im, Image.new("RGBA", im.size, corner)).convert("RGB").getbbox()
    assert drawn is not None  # the card, centred within the margins
    left, _, right, _ = drawn
    assert left >= 50 and right <= 1150 and abs((left + right) / 2 - 600) <= 2


def test_not_a_card_is_refused() -> None:
    with pytest.raises(png.RasteriseError):
        png.social("<svg/>")


@pytest.mark.parametrize("theme", list(Theme))
def test_the_png_names_the_source(theme: Theme) -> None:
    """Rasterised, a Last.fm track differs from the same track from Spotify: the source is
    drawn (the SVG tests say where, and that no bar is drawn without progress)."""
    base = {k: v for k, v in track().items() if k != "progressMs"}
    options = CardOptions(theme=theme)
    lastfm = render_card(parse_state({**base, "source": "lastfm"}), options, cover=None, now=NOW)
    spotify = render_card(parse_state(base), options, cover=None, now=NOW)
    assert "via Last.fm" in lastfm
    assert png.rasterise(lastfm) != png.rasterise(spotify)
