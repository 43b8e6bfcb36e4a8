"""The recently-played card's rendering: every theme, row limits, hostile text, options."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from nowplaying.cards.options import RecentOptions
from nowplaying.cards.recent import render_recent
from nowplaying.cards.themes import Theme
from nowplaying.schema import Recent

pytestmark = pytest.mark.anyio
NS = "{http://www.w3.org/2000/svg}"
NOW = 1_767_225_600.0
HOSTILE = "</text><script>alert(1)</script> & <b onload=x>"


def recent(n: int, *, playing: bool = False, title: str = "Song") -> Recent:
    data: dict[str, Any] = {
        "items": [
            {"type": "track", "title": f"{title} {i}", "artist": "Band", "playedAt": NOW - 60 * i}
            for i in range(1, n + 1)
        ]
    }
    if playing:
        data["nowPlaying"] = {
            "isPlaying": True,
            "type": "track",
            "title": "Live one",
            "artist": "Band",
            "progressMs": 1000,
            "durationMs": 200_000,
        }
    return Recent.model_validate(data)


def rows(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return ["".join(t.itertext()) for t in root.iter(f"{NS}text") if "row" in t.get("class", "")]


@pytest.mark.parametrize("theme", list(Theme))
def test_the_list_in_every_theme(theme: Theme) -> None:
    """Now playing on top, then the last tracks, newest first; well-formed, sized, accessible."""
    svg = render_recent(
        recent(4, playing=True), RecentOptions(theme=theme, limit=5), covers={}, now=NOW
    )
    root = ET.fromstring(svg)
    assert rows(svg) == ["Live one", "Song 1", "Song 2", "Song 3", "Song 4"]
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    assert root.get("role") == "img"
    title = root.find(f"{NS}title")
    assert title is not None and (title.text or "").startswith("Now playing: Live one by Band.")
    assert "Now playing" in "".join(root.itertext())
    assert "prefers-reduced-motion:reduce" in svg


@pytest.mark.parametrize("limit", [1, 3, 10])
def test_limit_counts_rows(limit: int) -> None:
    """At most ``limit`` rows, now playing included; the height follows the rows."""
    idle = render_recent(recent(10), RecentOptions(limit=limit), covers={}, now=NOW)
    live = render_recent(recent(10, playing=True), RecentOptions(limit=limit), covers={}, now=NOW)
    assert len(rows(idle)) == limit == len(rows(live))
    assert ET.fromstring(idle).get("height") == str(40 + limit * 52 + 8)


def test_hostile_titles_stay_text() -> None:
    """Markup in a title comes out as text."""
    svg = render_recent(recent(2, title=HOSTILE), RecentOptions(), covers={}, now=NOW)
    root = ET.fromstring(svg)
    assert "<script" not in svg
    assert not [n for n in root.iter() if n.tag.endswith("script")]
    assert rows(svg)[0].startswith("</text><script>")


def test_empty_list_says_so() -> None:
    svg = render_recent(recent(0), RecentOptions(), covers={}, now=NOW)
    assert "Nothing played yet" in svg and rows(svg) == []


def test_hide_cover_and_artist() -> None:
    svg = render_recent(
        recent(2),
        RecentOptions(hide=frozenset({"cover", "artist"})),  # type: ignore[arg-type]
        covers={},
        now=NOW,
    )
    assert "Band" not in svg and 'class="note"' not in svg
