"""The SVG card: every state in every theme renders well-formed, accessible and sized as
declared, hostile text stays text, and output is deterministic."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from nowplaying.cards.card import card_etag, render_bad_option, render_card
from nowplaying.cards.options import BadOption, CardOptions, Hide, card_options, theme_of
from nowplaying.cards.themes import THEMES, Theme
from nowplaying.schema import parse_state

NS = "{http://www.w3.org/2000/svg}"
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
COVER = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(24)).decode()
TRACK: dict[str, Any] = {
    "isPlaying": True,
    "type": "track",
    "title": "Midnight City",
    "artist": "M83",
    "album": "Hurry Up, We're Dreaming",
    "albumImageUrl": "https://i.scdn.co/image/ab67616d",
    "songUrl": "https://open.spotify.com/track/6GyFP1nfCDB8lbD2bG0Hq9",
    "progressMs": 60_000,
    "durationMs": 240_000,
}
LAST_PLAYED: dict[str, Any] = {
    "isPlaying": False,
    "lastPlayed": {
        "type": "track",
        "title": "Midnight City",
        "artist": "M83",
        "albumImageUrl": "https://i.scdn.co/image/ab67616d",
        "songUrl": "https://open.spotify.com/track/6GyFP1nfCDB8lbD2bG0Hq9",
        "playedAt": "2025-12-31T23:48:00Z",
    },
}


def render(
    data: dict[str, Any], *, cover: str | None = None, compact: bool = False, **params: Any
) -> str:
    """The card for a JSON object and options, typed as the app hands them to the renderer."""
    options = CardOptions(size="compact" if compact else "normal", **params)
    return render_card(parse_state(data), options, cover=cover, now=NOW)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def texts(root: ET.Element) -> list[str]:
    """The visible lines: the string content of each <text>, tspans included."""
    return ["".join(t.itertext()) for t in root.iter(f"{NS}text")]


def title_line(root: ET.Element) -> str:
    """The big line (song title or message)."""
    (node,) = [t for t in root.iter(f"{NS}text") if t.get("class") == "title"]
    return "".join(node.itertext())


def fill_width(svg: str) -> float | None:
    nodes = [r for r in parse(svg).iter(f"{NS}rect") if r.get("class") == "fill"]
    return float(nodes[0].attrib["width"]) if nodes else None


def track_width(svg: str) -> float:
    (node,) = [r for r in parse(svg).iter(f"{NS}rect") if r.get("class") == "track"]
    return float(node.attrib["width"])


def test_root_is_an_accessible_svg_image() -> None:
    """The root is namespaced SVG with size, viewBox, role=img and a <title> it points to."""
    root = parse(render(TRACK))
    assert root.tag == f"{NS}svg"
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == (
        "420",
        "120",
        "0 0 420 120",
    )
    assert root.get("role") == "img"
    title = root.find(f"{NS}title")
    assert title is not None
    assert root.get("aria-labelledby") == title.get("id")
    assert title.text == "Now playing: Midnight City by M83"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (TRACK, ["Now playing", "Midnight City", "M83"]),
        ({**TRACK, "isPlaying": False}, ["Paused", "Midnight City", "M83"]),
        ({**TRACK, "type": "episode"}, ["Now playing · Podcast", "Midnight City"]),
        ({"isPlaying": True, "type": "ad", "progressMs": 5000}, ["Advertisement"]),
        ({"isPlaying": False}, ["Not playing"]),
        (LAST_PLAYED, ["Last played · 12 min ago", "Midnight City", "M83"]),
        ({"error": "reconnect_required"}, ["Reconnect needed"]),
        ({"error": "not_found"}, ["Not found"]),
        ({"error": "unavailable"}, ["Spotify is unavailable"]),
        ({"error": "internal"}, ["Spotify is unavailable"]),
    ],
    ids=[
        "playing",
        "paused",
        "episode",
        "ad",
        "idle",
        "last-played",
        "reconnect",
        "not-found",
        "unavailable",
        "other-error",
    ],
)
def test_every_state_renders_its_text(data: dict[str, Any], expected: list[str]) -> None:
    """Each payload shape gives well-formed XML with the expected lines."""
    lines = texts(parse(render(data)))
    for line in expected:
        assert line in lines


@pytest.mark.parametrize(
    "data",
    [{"error": "reconnect_required"}, {"error": "not_found"}, {"error": "unavailable"}],
)
def test_error_cards_are_calm(data: dict[str, Any]) -> None:
    """Error cards show a message and the placeholder: no progress, no equalizer."""
    svg = render(data)
    assert fill_width(svg) is None
    assert 'class="eq' not in svg
    assert 'class="note"' in svg


def test_last_played_is_dimmed_and_never_live() -> None:
    """Last played is labelled, dimmed, and has no equalizer or progress."""
    svg = render(LAST_PLAYED, cover=COVER)
    assert "Now playing" not in svg
    assert ".cover{opacity:.5" in svg
    assert 'class="eq' not in svg
    assert fill_width(svg) is None
    assert parse(svg).find(f"{NS}title").text == (  # type: ignore[union-attr]
        "Not playing. Last played: Midnight City by M83 (12 min ago)"
    )


def test_a_private_source_is_named() -> None:
    """Nothing playing because the Last.fm profile is private: the card says so."""
    notice = {"source": "lastfm", "kind": "private", "message": "Listening is private on Last.fm"}
    svg = render({"isPlaying": False, "notice": notice})
    assert "Listening is private on Last.fm" in texts(parse(svg))
    assert parse(svg).find(f"{NS}title").text == (  # type: ignore[union-attr]
        "Not playing. Listening is private on Last.fm"
    )
    assert "Nothing on Spotify" not in svg


def test_stale_is_marked() -> None:
    """A stale payload carries a small 'Delayed' marker; a fresh one does not."""
    assert "Now playing · Delayed" in texts(parse(render({**TRACK, "stale": True})))
    assert "Delayed" not in render(TRACK)


def test_equalizer_animates_only_while_playing() -> None:
    """Playing animates the bars (stopped under reduced motion); paused draws them still."""
    playing = render(TRACK)
    paused = render({**TRACK, "isPlaying": False})
    assert "@keyframes" in playing
    assert "prefers-reduced-motion:reduce" in playing
    assert 'class="eq live"' in playing
    assert "animation" not in paused
    assert 'class="eq still"' in paused


HOSTILE = "</text><script>alert(1)</script> & \"quotes\" 'too' <b onload=x>"


def test_hostile_strings_stay_text() -> None:
    """Markup in a title or artist comes out as literal text, never as elements."""
    svg = render({**TRACK, "title": HOSTILE, "artist": HOSTILE})
    root = parse(svg)
    assert "</text><script>" not in svg
    assert "<script" not in svg
    assert not list(root.iter(f"{NS}script"))
    assert not list(root.iter("script"))
    assert title_line(root) == HOSTILE[:29] + "…"
    assert HOSTILE[:39] + "…" in texts(root)


DRAWN = ("svg", "title", "style", "defs", "clipPath", "linearGradient", "stop", "g")
SHAPES = ("rect", "image", "path", "text", "tspan", "circle")
ELEMENTS = {f"{NS}{name}" for name in DRAWN + SHAPES}


@settings(deadline=None)  # the first example pays for loading Unicode tables
@given(title=st.text(), artist=st.text())
def test_any_text_gives_well_formed_markup(title: str, artist: str) -> None:
    """Whatever Spotify sends, the card parses and contains only the elements we draw."""
    root = parse(render({**TRACK, "title": title, "artist": artist}))
    assert {node.tag for node in root.iter()} <= ELEMENTS


def test_no_event_handlers_or_external_references() -> None:
    """No attribute is an event handler, and no URL other than the data URI appears."""
    root = parse(render({**TRACK, "title": HOSTILE, "artist": 'x" onclick="y'}, cover=COVER))
    for node in root.iter():
        for name, value in node.attrib.items():
            assert not name.lower().startswith("on")
            assert "http" not in value
            if name.endswith("href"):
                assert value == COVER


def test_rtl_and_emoji_are_kept() -> None:
    """Arabic and emoji sequences pass through intact, with plaintext bidi on the lines."""
    title = "أغنية عربية 🫨"
    artist = "👩‍👩‍👧 فيروز"
    root = parse(render({**TRACK, "title": title, "artist": artist}))
    assert title_line(root) == title
    assert artist in texts(root)
    lines = [t for t in root.iter(f"{NS}text") if t.get("class") in ("title", "sub")]
    assert all(t.get("unicode-bidi") == "plaintext" for t in lines)


def test_long_titles_are_truncated_with_an_ellipsis() -> None:
    """A long title is cut, by character count, and ends with an ellipsis."""
    title = title_line(parse(render({**TRACK, "title": "x" * 200})))
    assert title.endswith("…")
    assert len(title) == 30


def test_compact_truncates_sooner() -> None:
    """The compact card has less room, so it keeps fewer characters."""
    normal = title_line(parse(render({**TRACK, "title": "x" * 200})))
    compact = title_line(parse(render({**TRACK, "title": "x" * 200}, compact=True)))
    assert len(compact) < len(normal)


@pytest.mark.parametrize(
    ("progress", "fraction"),
    [(0, 0.0), (120_000, 0.5), (240_000, 1.0), (999_999, 1.0), (-5, 0.0)],
)
def test_progress_width_follows_position(progress: int, fraction: float) -> None:
    """The fill is the played fraction of the track width, clamped to 0..1."""
    svg = render({**TRACK, "progressMs": progress})
    assert fill_width(svg) == pytest.approx(track_width(svg) * fraction, abs=0.01)


@pytest.mark.parametrize(
    "overrides",
    [{"progressMs": None}, {"durationMs": 0}, {"durationMs": -5}],
)
def test_no_progress_bar_when_unknown(overrides: dict[str, Any]) -> None:
    """Without a usable position and duration there is no bar at all."""
    svg = render({**TRACK, **overrides})
    assert fill_width(svg) is None
    assert 'class="track"' not in svg


@pytest.mark.parametrize(
    "data",
    [
        {"isPlaying": True, "title": 42},
        {**TRACK, "durationMs": None},
        {**TRACK, "extra": "field"},
        {"error": "something_new"},
        {"isPlaying": False, "lastPlayed": {**LAST_PLAYED["lastPlayed"], "playedAt": "tuesday"}},
    ],
)
def test_malformed_states_never_reach_the_renderer(data: dict[str, Any]) -> None:
    """The card takes the typed state: a payload of the wrong shape is refused before it."""
    with pytest.raises(ValidationError):
        parse_state(data)


@pytest.mark.parametrize("theme", list(Theme))
def test_each_theme_renders(theme: Theme) -> None:
    """All themes give well-formed cards."""
    lines = texts(parse(render(TRACK, theme=theme)))
    assert any("Midnight City" in line for line in lines)


def test_themes_use_their_palettes() -> None:
    """Light and dark use their own backgrounds; auto switches with prefers-color-scheme."""
    light = render(TRACK, theme="light")
    dark = render(TRACK, theme="dark")
    auto = render(TRACK, theme="auto")
    assert ".bg{fill:#ffffff" in light and "#181818" not in light
    assert ".bg{fill:#181818" in dark and "#ffffff" not in dark
    assert "@media (prefers-color-scheme:dark){.bg{fill:#181818" in auto
    assert ".bg{fill:#ffffff" in auto
    assert len({light, dark, auto}) == 3


def test_compact_is_smaller() -> None:
    """The compact card is 320x84 with a smaller cover."""
    root = parse(render(TRACK, compact=True, cover=COVER))
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == (
        "320",
        "84",
        "0 0 320 84",
    )
    image = root.find(f"{NS}image")
    assert image is not None and image.get("width") == "60"


def test_cover_is_embedded() -> None:
    """A data URI cover is drawn as an <image>, instead of the placeholder note."""
    root = parse(render(TRACK, cover=COVER))
    image = root.find(f"{NS}image")
    assert image is not None
    assert image.get("href") == COVER
    assert image.get("width") == "88"
    assert not [p for p in root.iter(f"{NS}path") if p.get("class") == "note"]


@pytest.mark.parametrize(
    "cover",
    [
        "https://i.scdn.co/image/ab67616d",
        "javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "data:image/svg+xml;base64,PHN2Zz48c2NyaXB0Lz48L3N2Zz4=",
        'data:image/png;base64,AAAA" onload="alert(1)',
        "",
    ],
)
def test_other_covers_are_rejected(cover: str) -> None:
    """Anything but a base64 raster data URI is ignored and the placeholder drawn."""
    root = parse(render(TRACK, cover=cover))
    assert root.find(f"{NS}image") is None
    assert [p for p in root.iter(f"{NS}path") if p.get("class") == "note"]


def test_placeholder_without_cover() -> None:
    """No cover gives the neutral placeholder with a note glyph."""
    root = parse(render(TRACK))
    assert root.find(f"{NS}image") is None
    assert [p for p in root.iter(f"{NS}path") if p.get("class") == "note"]


def test_output_is_deterministic() -> None:
    """The same input renders the same bytes."""
    assert render(LAST_PLAYED, cover=COVER) == render(dict(LAST_PLAYED), cover=COVER)
    assert render(TRACK, theme="dark") == render(dict(TRACK), theme="dark")


def test_etag_is_stable_and_follows_content() -> None:
    """The ETag is a quoted strong tag that changes exactly when the SVG does."""
    svg = render(TRACK)
    etag = card_etag(svg)
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    assert card_etag(render(TRACK)) == etag
    assert card_etag(render({**TRACK, "progressMs": 64_999})) == etag  # the same 5 s step
    assert card_etag(render({**TRACK, "progressMs": 65_000})) != etag
    assert card_etag(render({**TRACK, "title": "Wait"})) != etag


def test_idle_options_choose_what_shows_while_nothing_plays() -> None:
    """idle=last shows the last track; idle=text the owner's words instead; idle=hide nothing."""
    assert "Midnight City" in texts(parse(render(LAST_PLAYED)))
    words = texts(parse(render(LAST_PLAYED, idle="text", idle_text="Offline <3")))
    assert "Offline <3" in words and "Midnight City" not in words
    assert "Not playing" in texts(parse(render(LAST_PLAYED, idle="text")))
    hidden = parse(render(LAST_PLAYED, idle="hide"))
    assert (hidden.get("width"), hidden.get("height")) == ("1", "1")
    assert texts(parse(render(TRACK, idle="hide")))  # only idle hides: a track still shows


# -- every theme x every state: well-formed, accessible, sized as declared, hostile text escaped

HOSTILE_BIDI = '</text><script>alert(1)</script> & "q" <b onload=x> \u202eevil'


HOSTILE_TRACK: dict[str, Any] = {
    "isPlaying": True,
    "type": "track",
    "title": HOSTILE_BIDI,
    "artist": HOSTILE_BIDI,
    "albumImageUrl": "https://i.scdn.co/image/x",
    "songUrl": "https://open.spotify.com/track/x",
    "progressMs": 61_000,
    "durationMs": 240_000,
}


STATES: dict[str, dict[str, Any]] = {
    "playing": HOSTILE_TRACK,
    "paused": {**HOSTILE_TRACK, "isPlaying": False},
    "episode": {**HOSTILE_TRACK, "type": "episode"},
    "stale": {**HOSTILE_TRACK, "stale": True},
    "ad": {"isPlaying": True, "type": "ad", "progressMs": 1000},
    "idle": {"isPlaying": False},
    "last-played": {
        "isPlaying": False,
        "lastPlayed": {
            "type": "track",
            "title": HOSTILE_BIDI,
            "artist": HOSTILE_BIDI,
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
    data = {**HOSTILE_TRACK, "artist": "M83"}
    assert "M83" in "".join(check(render_card(parse_state(data), now=NOW)).itertext())
    root = check(render_card(parse_state(data), options, cover=COVER, now=NOW))
    assert root.get("width") == "600"
    assert root.find(f"{NS}image") is None and root.find(f"{NS}use") is None
    assert "M83" not in "".join(root.itertext())
    assert "#ff0000" in "".join(s.text or "" for s in root.iter(f"{NS}style"))


def test_playing_animates_and_rests_under_reduced_motion() -> None:
    """Playing cards animate their equalizer, with a rest for prefers-reduced-motion."""
    for theme in Theme:
        svg = render_card(parse_state(HOSTILE_TRACK), CardOptions(theme=theme), now=NOW)
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


SOURCES = {"lastfm": "via Last.fm", "listenbrainz": "via ListenBrainz", "push": "from a player"}


@pytest.mark.parametrize("theme", list(Theme))
@pytest.mark.parametrize(("source", "via"), SOURCES.items())
def test_every_theme_names_a_source_other_than_spotify(theme: Theme, source: str, via: str) -> None:
    """A track from Last.fm, ListenBrainz or a push says so in the visible text and the
    accessible name, writes no "Spotify", and without progress draws no bar (nor times)."""
    data = {k: v for k, v in TRACK.items() if k != "progressMs"}
    svg = render({**data, "source": source}, theme=theme)
    root = parse(svg)
    visible = " ".join(texts(root))
    assert via.upper() in visible.upper()
    assert via in (root.findtext(f"{NS}title") or "")
    assert "Spotify" not in visible
    assert fill_width(svg) is None and 'class="track"' not in svg and 'class="time"' not in svg
    paused = render({**data, "source": source, "isPlaying": False}, theme=theme)
    assert via.upper() in " ".join(texts(parse(paused))).upper()


@pytest.mark.parametrize("theme", list(Theme))
def test_spotify_is_not_named_as_a_via(theme: Theme) -> None:
    """A Spotify track says nothing of its source but the brand it always had."""
    svg = render({**TRACK, "source": "spotify"}, theme=theme)
    assert not any(via in svg for via in SOURCES.values())
    assert svg == render(TRACK, theme=theme)
