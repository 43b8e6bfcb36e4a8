"""Every theme x every state: well-formed, accessible, sized as declared, hostile text escaped."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nowplaying.cards.card import render_bad_option, render_card
from nowplaying.cards.options import BadOption, CardOptions, Hide, card_options, theme_of
from nowplaying.cards.themes import THEMES, Theme
from nowplaying.schema import parse_state

NS = "{http://www.w3.org/2000/svg}"
NOW = 1_767_225_600.0
COVER = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(24)).decode()
HOSTILE = '</text><script>alert(1)</script> & "q" <b onload=x> \u202eevil'
TRACK: dict[str, Any] = {
    "isPlaying": True,
    "type": "track",
    "title": HOSTILE,
    "artist": HOSTILE,
    "albumImageUrl": "https://i.scdn.co/image/x",
    "songUrl": "https://open.spotify.com/track/x",
    "progressMs": 61_000,
    "durationMs": 240_000,
}
STATES: dict[str, dict[str, Any]] = {
    "playing": TRACK,
    "paused": {**TRACK, "isPlaying": False},
    "episode": {**TRACK, "type": "episode"},
    "stale": {**TRACK, "stale": True},
    "ad": {"isPlaying": True, "type": "ad", "progressMs": 1000},
    "idle": {"isPlaying": False},
    "last-played": {
        "isPlaying": False,
        "lastPlayed": {
            "type": "track",
            "title": HOSTILE,
            "artist": HOSTILE,
            "playedAt": "2025-12-31T23:48:00Z",
        },
    },
    "reconnect": {"error": "reconnect_required"},
    "not-found": {"error": "not_found"},
    "unavailable": {"error": "unavailable"},
}
_DRAWN = ("svg", "title", "style", "defs", "clipPath", "linearGradient", "stop", "filter")
_SHAPES = (
    "feGaussianBlur",
    "symbol",
    "use",
    "g",
    "rect",
    "image",
    "path",
    "text",
    "tspan",
    "circle",
)
ALLOWED = {f"{NS}{n}" for n in (*_DRAWN, *_SHAPES)}
ANIMATED = re.compile(r"animation:(?!none)")


def cards() -> list[Any]:
    cases = []
    for theme in Theme:
        for name, data in STATES.items():
            cases.append(pytest.param(theme, data, id=f"{theme}-{name}"))
    return cases


def check(svg: str) -> ET.Element:
    """The invariants every card keeps."""
    root = ET.fromstring(svg)  # well-formed
    assert root.tag == f"{NS}svg"
    width, height = root.get("width"), root.get("height")
    assert root.get("viewBox") == f"0 0 {width} {height}"
    assert root.get("role") == "img"
    title = root.find(f"{NS}title")
    assert title is not None and title.text and root.get("aria-labelledby") == title.get("id")
    assert {node.tag for node in root.iter()} <= ALLOWED
    for node in root.iter():
        for name, value in node.attrib.items():
            assert not name.lower().startswith("on")
            if name.endswith("href"):
                assert value in (COVER, "#np-cover")
    assert "<script" not in svg and "\u202e" not in svg
    style = "".join(s.text or "" for s in root.iter(f"{NS}style"))
    if ANIMATED.search(style):  # motion only with its reduced-motion rest
        assert "@media (prefers-reduced-motion:reduce){.eq rect{animation:none}" in style
    return root


@pytest.mark.parametrize(("theme", "data"), cards())
def test_every_theme_renders_every_state(theme: Theme, data: dict[str, Any]) -> None:
    """Each card is a well-formed, accessible image of its theme's size, hostile text as text."""
    look = THEMES[theme]
    root = check(render_card(parse_state(data), CardOptions(theme=theme), cover=COVER, now=NOW))
    assert (root.get("width"), root.get("height")) == (
        str(look.layout.width),
        str(look.layout.height),
    )
    visible = "".join(root.itertext())
    if "title" in data.get("lastPlayed", data):
        assert "</text><script>" in visible  # the hostile title reads back as text


@pytest.mark.parametrize("theme", list(Theme))
def test_a_bad_parameter_is_an_image_naming_it(theme: Theme) -> None:
    """A bad value still gives an image: the parameter named in the text and the alt text."""
    root = check(render_bad_option(BadOption("width", "expected at most 800"), theme))
    layout = THEMES[theme].layout
    assert (root.get("width"), root.get("height")) == (str(layout.width), str(layout.height))
    assert "Bad parameter: width" in "".join(root.itertext())
    title = root.find(f"{NS}title")
    assert title is not None and "width" in (title.text or "")


@pytest.mark.parametrize("theme", list(Theme))
def test_options_apply_to_every_theme(theme: Theme) -> None:
    """Width, hidden parts and colours hold in every theme."""
    options = CardOptions(
        theme=theme, width=600, hide=frozenset({Hide.COVER, Hide.ARTIST}), accent="#ff0000"
    )
    data = {**TRACK, "artist": "M83"}
    assert "M83" in "".join(check(render_card(parse_state(data), now=NOW)).itertext())
    root = check(render_card(parse_state(data), options, cover=COVER, now=NOW))
    assert root.get("width") == "600"
    assert root.find(f"{NS}image") is None and root.find(f"{NS}use") is None
    assert "M83" not in "".join(root.itertext())
    assert "#ff0000" in "".join(s.text or "" for s in root.iter(f"{NS}style"))


def test_playing_animates_and_rests_under_reduced_motion() -> None:
    """Playing cards animate their equalizer, with a rest for prefers-reduced-motion."""
    for theme in Theme:
        svg = render_card(parse_state(TRACK), CardOptions(theme=theme), now=NOW)
        assert ANIMATED.search(svg), theme
        assert "prefers-reduced-motion:reduce" in svg


QUERY_KEYS = st.sampled_from(
    [*CardOptions.model_fields, "compact", "v"]  # every parameter, the old spelling, a buster
)


@settings(deadline=None, max_examples=200)
@given(query=st.dictionaries(QUERY_KEYS, st.text(max_size=12), max_size=5))
def test_any_query_gives_an_image(query: dict[str, str]) -> None:
    """Whatever the query says: options and a card, or a BadOption naming a real parameter and
    its card; never another exception, never markup from the query."""
    bad: BadOption | None = None
    try:
        options = card_options(query, CardOptions)
    except BadOption as e:
        bad = e
    if bad is None:
        svg = render_card(parse_state(STATES["playing"]), options, cover=COVER, now=NOW)
    else:
        assert bad.param in query or (bad.param == "size" and "compact" in query)
        svg = render_bad_option(bad, theme_of(query))
    check(svg)
