"""The recently-played card: the last tracks as an SVG list, what plays now on top."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from xml.sax.saxutils import escape

from nowplaying.cards.card import COVER_URI, equalizer, look, placeholder, style
from nowplaying.cards.options import Hide, RecentOptions
from nowplaying.cards.text import clean, fit, played_ago
from nowplaying.schema import Recent

__all__ = ["render_recent"]

_HEAD = 40
_ROW = 52
_ART = 40
_PAD = 16
_CSS = ".row{font-size:14px}.recent .sub{font-size:12px}.rule{fill-opacity:.6}"


@dataclass(frozen=True, slots=True)
class _Row:
    title: str
    artist: str
    image: str | None
    played_at: datetime | None
    """None: playing now."""


def _rows(recent: Recent, limit: int) -> list[_Row]:
    rows = []
    now = recent.now_playing
    if now is not None and now.is_playing and clean(now.title):
        rows.append(_Row(clean(now.title), clean(now.artist), now.album_image_url, None))
    for it in recent.items:
        if clean(it.title):
            rows.append(_Row(clean(it.title), clean(it.artist), it.album_image_url, it.played_at))
    return rows[:limit]


def render_recent(
    recent: Recent, options: RecentOptions, *, covers: Mapping[str, str], now: float
) -> str:
    """The list: the track playing now first (when one plays), then the last ones, newest first.

    ``covers`` maps an image URL to its ``data:`` URI (rows without one get the placeholder).
    At most ``options.limit`` rows in all; the same arguments always give the same string.
    """
    lk = look(options)
    rows = _rows(recent, options.limit)
    live = bool(rows) and rows[0].played_at is None
    hide_artist = Hide.ARTIST in options.hide
    w = max(lk.layout.width, 320) if options.width is None else options.width
    h = _HEAD + max(1, len(rows)) * _ROW + 8
    names = [_by(r, hide_artist) for r in rows[1 if live else 0 :]]
    alt = f"Now playing: {_by(rows[0], hide_artist)}. " if live else ""
    alt += "Recently played: " + ("; ".join(names) if names else "nothing yet")
    state = "playing" if live else "paused"
    eq = "live" if live and Hide.EQUALIZER not in options.hide else None
    radius = min(lk.layout.radius, 24)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-labelledby="np-title" class="np recent {state}">',
        f'<title id="np-title">{escape(fit(alt, 600))}</title>',
        f"<style>{style(lk, state, eq)}{_CSS}</style>",
        "<defs>",
        '<linearGradient id="np-grad" x1="0" y1="0" x2="1" y2="1">'
        '<stop offset="0" class="a1"/><stop offset="1" class="a2"/></linearGradient>',
        f'<clipPath id="np-col"><rect x="0" y="0" width="{w - 96}" height="{h}"/></clipPath>',
        "</defs>",
        f'<rect class="bg" x=".5" y=".5" width="{w - 1}" height="{h - 1}" rx="{radius}"/>',
        f'<text class="label" x="{_PAD}" y="26">Recently played</text>',
        f'<circle class="dot" cx="{w - _PAD - 3.5}" cy="22" r="3.5"/>',
        f'<text class="brand" x="{w - _PAD - 12}" y="26" text-anchor="end">Spotify</text>',
    ]
    if not rows:
        parts.append(f'<text class="sub" x="{_PAD}" y="{_HEAD + 30}">Nothing played yet</text>')
    show_cover = Hide.COVER not in options.hide
    x = _PAD + (_ART + 12 if show_cover else 0)
    units = max(12, (w - 96 - x) // 8)
    for i, row in enumerate(rows):
        y = _HEAD + i * _ROW
        if i:
            parts.append(
                f'<rect class="track rule" x="{x}" y="{y}" width="{w - x - _PAD}" height="1"/>'
            )
        if show_cover:
            parts.append(_art(_PAD, y + 6, covers.get(row.image or "")))
        lines = (
            f'<text class="title row" x="{x}" y="{y + 22}" unicode-bidi="plaintext">'
            f"{escape(fit(row.title, units))}</text>"
        )
        if row.artist and not hide_artist:
            lines += (
                f'<text class="sub" x="{x}" y="{y + 40}" unicode-bidi="plaintext">'
                f"{escape(fit(row.artist, units + 4))}</text>"
            )
        parts.append(f'<g clip-path="url(#np-col)">{lines}</g>')
        if row.played_at is not None:
            parts.append(
                f'<text class="time" x="{w - _PAD}" y="{y + 22}" text-anchor="end">'
                f"{played_ago(row.played_at, now)}</text>"
            )
        else:
            parts.append(
                f'<text class="time now" x="{w - _PAD}" y="{y + 40}" text-anchor="end">'
                "Now playing</text>"
            )
            if eq is not None:
                parts.append(equalizer("live", w - _PAD - 18, y + 22, 12))
    parts.append("</svg>")
    return "".join(parts) + "\n"


def _by(row: _Row, hide_artist: bool) -> str:
    return f"{row.title} by {row.artist}" if row.artist and not hide_artist else row.title


def _art(x: int, y: int, cover: str | None) -> str:
    box = f'x="{x}" y="{y}" width="{_ART}" height="{_ART}"'
    base = f'<rect {box} rx="6" fill="url(#np-grad)"/>'
    if cover is not None and COVER_URI.fullmatch(cover):
        return base + (
            f'<image class="cover" {box} preserveAspectRatio="xMidYMid slice" href="{cover}"/>'
        )
    return base + placeholder(x, y, _ART)
