"""Cover colours: the ``cover`` theme and ``accent=cover``, every text at 4.5:1 or better."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from nowplaying.cards.card import render_card
from nowplaying.cards.colours import MIN_CONTRAST, contrast, cover_colours, readable
from nowplaying.cards.options import BadOption, CardOptions, card_options
from nowplaying.cards.themes import THEMES, Theme
from nowplaying.schema import parse_state

NOW = 1_767_225_600.0
TRACK: dict[str, Any] = {
    "isPlaying": True,
    "type": "track",
    "title": "Midnight City",
    "artist": "M83",
    "albumImageUrl": "https://i.scdn.co/image/x",
    "progressMs": 61_000,
    "durationMs": 240_000,
}
RGB = st.tuples(*[st.integers(0, 255)] * 3)


def cover(top: tuple[int, int, int], bottom: tuple[int, int, int], fmt: str = "JPEG") -> str:
    im = Image.new("RGB", (64, 64), top)
    im.paste(Image.new("RGB", (64, 24), bottom), (0, 40))
    buf = io.BytesIO()
    im.save(buf, fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


def fills(svg: str) -> list[dict[str, str]]:
    """Each palette block of the card's style (the second: under prefers-color-scheme: dark)."""
    style = svg.split("<style>", 1)[1].split("</style>", 1)[0]
    blocks = style.split("@media (prefers-color-scheme:dark)")
    found = []
    for block in blocks:
        colours = dict(re.findall(r"\.(bg|title|brand)\{fill:(#[0-9a-f]{6})", block))
        muted = re.search(r"\.sub,\.label,\.time\{fill:(#[0-9a-f]{6}|[^}]+)\}", block)
        if muted:
            colours["muted"] = muted.group(1)
        if colours:
            found.append(colours)
    return found


def card(options: CardOptions, art: str | None) -> str:
    return render_card(parse_state(TRACK), options, cover=art, now=NOW)


@settings(max_examples=60, deadline=None)
@given(top=RGB, bottom=RGB)
def test_every_cover_card_reads_at_4_5_to_1(
    top: tuple[int, int, int], bottom: tuple[int, int, int]
) -> None:
    """Whatever the cover, the title, the artist line and the brand read on the background."""
    [colours] = fills(card(CardOptions(theme=Theme.COVER), cover(top, bottom)))
    for role in ("title", "muted", "brand"):
        assert contrast(colours[role], colours["bg"]) >= MIN_CONTRAST, (role, colours)


@settings(max_examples=40, deadline=None)
@given(top=RGB, bottom=RGB, theme=st.sampled_from([Theme.LIGHT, Theme.DARK, Theme.AUTO]))
def test_a_cover_accent_reads_on_every_theme(
    top: tuple[int, int, int], bottom: tuple[int, int, int], theme: Theme
) -> None:
    """accent=cover: the accent-coloured text reads on the theme's background, light and dark."""
    svg = card(CardOptions(theme=theme, accent="cover"), cover(top, bottom))
    blocks = fills(svg)
    assert len(blocks) == (2 if THEMES[theme].dark is not None else 1)
    for colours in blocks:
        assert contrast(colours["brand"], colours["bg"]) >= MIN_CONTRAST, colours


def test_the_colours_come_from_the_cover() -> None:
    """A red-and-navy cover: a dark red background, a red accent; another cover, others."""
    red = cover((210, 30, 40), (10, 20, 60))
    found = cover_colours(red)
    assert found is not None
    r, g, b = (int(found.background[i : i + 2], 16) for i in (1, 3, 5))
    assert r > g and r > b  # the common colour's hue, muted
    assert contrast("#ffffff", found.background) >= 7
    green = cover_colours(cover((20, 160, 60), (240, 240, 240)))
    assert green is not None and green.vivid != found.vivid
    assert card(CardOptions(theme=Theme.COVER), red) != card(
        CardOptions(theme=Theme.COVER), cover((20, 160, 60), (240, 240, 240))
    )


def test_colours_are_computed_once_per_cover() -> None:
    art = cover((90, 10, 200), (250, 200, 20), "PNG")
    before = cover_colours.cache_info()
    for _ in range(5):
        card(CardOptions(theme=Theme.COVER), art)
        card(CardOptions(theme=Theme.DARK, accent="cover"), art)
    after = cover_colours.cache_info()
    assert after.misses - before.misses <= 1


@pytest.mark.parametrize(
    "art", [None, "data:image/png;base64,iVBORw0KGgoAAAAA", "data:image/jpeg;base64,AAAA"]
)
def test_no_cover_or_a_broken_one_keeps_the_themes_colours(art: str | None) -> None:
    assert fills(card(CardOptions(theme=Theme.COVER), art)) == fills(
        card(CardOptions(theme=Theme.COVER), None)
    )
    accent = fills(card(CardOptions(theme=Theme.DARK, accent="cover"), art))
    assert accent == fills(card(CardOptions(theme=Theme.DARK), None))


def test_cover_is_an_accent_not_a_background() -> None:
    assert card_options({"accent": "cover"}, CardOptions).accent == "cover"
    assert card_options({"accent": "COVER"}, CardOptions).accent == "cover"
    with pytest.raises(BadOption) as refused:
        card_options({"bg": "cover"}, CardOptions)
    assert refused.value.param == "bg"


@pytest.mark.parametrize(("colour", "bg"), [("#777777", "#808080"), ("#ffff00", "#ffffff")])
def test_readable_moves_a_colour_until_it_reads(colour: str, bg: str) -> None:
    def parse(c: str) -> tuple[float, float, float]:
        return (int(c[1:3], 16) / 255, int(c[3:5], 16) / 255, int(c[5:7], 16) / 255)

    moved = readable(parse(colour), parse(bg))
    text = "#" + "".join(f"{round(c * 255):02x}" for c in moved)
    assert contrast(text, bg) >= MIN_CONTRAST
