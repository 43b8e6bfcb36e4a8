"""The SVG card: what someone plays, as an image for READMEs and ``<img>`` tags.

Pure: :func:`render_card` turns a typed state (:data:`nowplaying.views.State`: what plays, or an
error such as ``not_found``) into a self-contained SVG string, and :func:`card_etag` names that
string for caching. No I/O; the cover art arrives as a ready ``data:`` URI (see
:mod:`nowplaying.covers`).

Every string from Spotify is treated as hostile: control characters and bidi overrides are dropped,
the rest is XML-escaped into text nodes and never reaches an attribute. The only URL in the output
is the cover's ``data:image/...;base64`` URI, checked against a strict pattern. Styling is an
embedded ``<style>`` (which GitHub keeps for SVGs shown through ``<img>``), so the ``auto`` theme
can follow ``prefers-color-scheme`` and the equalizer can rest under ``prefers-reduced-motion``.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from xml.sax.saxutils import escape

from .themes import COMPACT, Layout, Palette, Theme, spec
from .views import Ad, Error, ErrorCode, Nothing, Playing, State

__all__ = ["card_etag", "render_card"]

_COVER_URI = re.compile(r"data:image/(?:png|jpeg|gif|webp);base64,[A-Za-z0-9+/]+={0,2}")
# A music note in a 24x24 box, the widget's placeholder glyph.
_NOTE = "M9 18V5.5l11-2V16M9 18a3 3 0 1 1-6 0 3 3 0 0 1 6 0Zm11-2a3 3 0 1 1-6 0 3 3 0 0 1 6 0Z"


@dataclass(frozen=True, slots=True)
class _View:
    """What the card says, decided from the payload before any drawing."""

    state: str
    """A CSS class: playing, paused, last-played, idle, ad, reconnect, not-found, unavailable."""
    label: str
    """The small uppercase line above the title; empty when the title says it all."""
    title: str
    subtitle: str
    heading: str
    """The accessible name, in ``<title>``."""
    progress: float | None = None
    eq: Literal["live", "still"] | None = None
    stale: bool = False


def render_card(
    state: State,
    *,
    theme: Theme = Theme.AUTO,
    compact: bool = False,
    cover: str | None = None,
    now: float,
) -> str:
    """The SVG card for one state (what plays, or an error such as ``not_found``).

    ``cover`` must be a ``data:image/{png,jpeg,gif,webp};base64,...`` URI; anything else is ignored
    and the neutral placeholder is drawn instead. ``now`` (seconds since the epoch) dates the
    "Last played" label. The same arguments always give the same string.
    """
    view = _view(state, now)
    look = spec(theme)
    layout = COMPACT if compact else look.layout
    image = cover if cover is not None and _COVER_URI.fullmatch(cover) else None
    return _draw(view, layout, look.palette, look.dark, image)


def card_etag(svg: str) -> str:
    """A strong, quoted ETag for a rendered card."""
    return '"' + hashlib.sha256(svg.encode("utf-8")).hexdigest()[:32] + '"'


# -- what to say --------------------------------------------------------------------------------


def _view(state: State, now: float) -> _View:
    if isinstance(state, Error):
        return _error_view(state.error)
    stale = state.stale is True
    if isinstance(state, Ad):
        return _View("ad", "", "Advertisement", "Spotify will be right back", "Advertisement")
    if isinstance(state, Playing) and _clean(state.title):
        title, artist = _clean(state.title), _clean(state.artist)
        label = "Now playing" if state.is_playing else "Paused"
        if state.kind == "episode":
            label += " · Podcast"
        heading = f"{'Now playing' if state.is_playing else 'Paused'}: {_by(title, artist)}"
        return _View(
            state="playing" if state.is_playing else "paused",
            label=label,
            title=title,
            subtitle=artist,
            heading=heading + (" (delayed)" if stale else ""),
            progress=_progress(state.progress_ms, state.duration_ms),
            eq="live" if state.is_playing else "still",
            stale=stale,
        )
    last = state.last_played if isinstance(state, Nothing) else None
    if last is not None and _clean(last.title):
        title, artist = _clean(last.title), _clean(last.artist)
        age = _ago(last.played_at, now)
        label = f"Last played · {age}" if age else "Last played"
        heading = f"Not playing. Last played: {_by(title, artist)}" + (f" ({age})" if age else "")
        return _View("last-played", label, title, artist, heading, stale=stale)
    return _View("idle", "", "Not playing", "Nothing on Spotify right now", "Not playing")


def _error_view(code: ErrorCode) -> _View:
    if code is ErrorCode.RECONNECT_REQUIRED:
        sub = "Spotify access has expired"
        return _View("reconnect", "", "Reconnect needed", sub, f"Reconnect needed: {sub}")
    if code is ErrorCode.NOT_FOUND:
        sub = "This link is no longer shared"
        return _View("not-found", "", "Not found", sub, f"Not found: {sub}")
    sub = "Retrying shortly"
    return _View("unavailable", "", "Spotify is unavailable", sub, "Spotify is unavailable")


def _by(title: str, artist: str) -> str:
    return f"{title} by {artist}" if artist else title


def _progress(position: int | None, duration: int) -> float | None:
    """How far along, clamped to 0..1; None when the position is unknown or the length nonsense."""
    if position is None or duration <= 0:
        return None
    return min(1.0, max(0.0, position / duration))


def _ago(played_at: datetime, now: float) -> str:
    """ "12 min ago", as the widget says it."""
    when = played_at if played_at.tzinfo is not None else played_at.replace(tzinfo=UTC)
    minutes = math.floor((now - when.timestamp()) / 60)
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return f"{minutes} min ago"
    hours = minutes // 60
    if hours < 24:
        return f"{hours} h ago"
    days = hours // 24
    return "yesterday" if days == 1 else f"{days} days ago"


# -- hostile text -------------------------------------------------------------------------------

# Bidi embeddings, overrides and isolates, and the two characters XML 1.0 forbids outright.
_DROP = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufffe\uffff")
_ZWJ = "\u200d"
_ELLIPSIS = "…"


def _clean(value: object) -> str:
    """A Spotify string made safe to put in XML text: one line, no controls, no overrides.

    XML 1.0 forbids most control characters outright (a NUL would break the document), and an
    unbalanced bidi override could flip the text after it.
    """
    if not isinstance(value, str):
        return ""
    out = []
    for ch in value:
        if ch.isspace():
            out.append(" ")
        elif ch not in _DROP and unicodedata.category(ch) not in ("Cc", "Cs"):
            out.append(ch)
    return " ".join("".join(out).split())


def _width(ch: str) -> int:
    """Rough width in "average Latin letter" units; SVG cannot measure text for us."""
    if ch == _ZWJ or unicodedata.combining(ch) or "\ufe00" <= ch <= "\ufe0f":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _fit(text: str, units: int) -> str:
    """``text`` cut to ``units`` with an ellipsis, never splitting a mark from its letter."""
    if sum(_width(ch) for ch in text) <= units:
        return text
    kept: list[str] = []
    used = 0
    for ch in text:
        w = _width(ch)
        if w and used + w > units - 1:
            break
        kept.append(ch)
        used += w
    while kept and (kept[-1] == _ZWJ or kept[-1].isspace()):
        kept.pop()
    # A flag is a pair of regional indicators: never leave half of one.
    flags = 0
    for ch in reversed(kept):
        if not "\U0001f1e6" <= ch <= "\U0001f1ff":
            break
        flags += 1
    if flags % 2:
        kept.pop()
    return "".join(kept).rstrip() + _ELLIPSIS


# -- drawing ------------------------------------------------------------------------------------


def _draw(
    view: _View, lay: Layout, palette: Palette, dark: Palette | None, cover: str | None
) -> str:
    w, h, pad, art = lay.width, lay.height, lay.pad, lay.art
    x0 = pad + art + lay.gap
    right = w - pad
    col = right - x0
    art_y = (h - art) // 2
    # Without the label row, a message's two lines move up to sit centred on the art.
    lift = 0 if view.label else 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-labelledby="np-title" class="np {view.state}">',
        f'<title id="np-title">{escape(_fit(view.heading, 300))}</title>',
        f"<style>{_css(palette, dark, lay, view)}</style>",
        "<defs>",
        f'<clipPath id="np-art"><rect x="{pad}" y="{art_y}" width="{art}" height="{art}" '
        f'rx="{lay.art_radius}"/></clipPath>',
        f'<clipPath id="np-col"><rect x="{x0}" y="0" width="{col}" height="{h}"/></clipPath>',
        '<linearGradient id="np-grad" x1="0" y1="0" x2="1" y2="1">'
        '<stop offset="0" class="a1"/><stop offset="1" class="a2"/></linearGradient>',
        "</defs>",
        f'<rect class="bg" x=".5" y=".5" width="{w - 1}" height="{h - 1}" rx="{lay.radius}"/>',
        _art(lay, art_y, cover),
        _meta(view, lay, x0, right),
        '<g clip-path="url(#np-col)">',
        f'<text class="title" x="{x0}" y="{lay.title_y - lift}" unicode-bidi="plaintext">'
        f"{escape(_fit(view.title, lay.title_units))}</text>",
        f'<text class="sub" x="{x0}" y="{lay.sub_y - lift}" unicode-bidi="plaintext">'
        f"{escape(_fit(view.subtitle, lay.sub_units))}</text>",
        "</g>",
        _bar(view.progress, x0, lay.bar_y, col),
        "</svg>",
    ]
    return "".join(p for p in parts if p) + "\n"


def _art(lay: Layout, y: int, cover: str | None) -> str:
    x, size = lay.pad, lay.art
    base = f'<rect x="{x}" y="{y}" width="{size}" height="{size}" rx="{lay.art_radius}" '
    if cover is not None:
        image = (
            f'<image class="cover" x="{x}" y="{y}" width="{size}" height="{size}" '
            f'preserveAspectRatio="xMidYMid slice" clip-path="url(#np-art)" href="{cover}"/>'
        )
        return base + 'fill="url(#np-grad)"/>' + image
    glyph = size * 0.4
    scale = glyph / 24
    gx = x + (size - glyph) / 2
    gy = y + (size - glyph) / 2
    return (
        base
        + 'fill="url(#np-grad)"/>'
        + f'<path class="note" transform="translate({_n(gx)} {_n(gy)}) scale({_n(scale)})" '
        f'd="{_NOTE}"/>'
    )


def _meta(view: _View, lay: Layout, x0: int, right: int) -> str:
    """The small row above the title: equalizer, state label, stale marker, brand."""
    y = lay.meta_y
    out = []
    x = x0
    if view.eq is not None:
        bar_h = lay.meta_size
        top = y - bar_h + 1
        # Resting heights when paused; while playing, CSS scales full-height bars.
        rest = (0.35, 0.6, 0.35, 0.6) if view.eq == "still" else (1.0, 1.0, 1.0, 1.0)
        bars = "".join(
            f'<rect x="{x0 + i * 5}" y="{_n(top + bar_h * (1 - r))}" width="3" '
            f'height="{_n(bar_h * r)}" rx="1"/>'
            for i, r in enumerate(rest)
        )
        out.append(f'<g class="eq {view.eq}" aria-hidden="true">{bars}</g>')
        x = x0 + 26
    stale = '<tspan class="stale"> · Delayed</tspan>' if view.stale else ""
    if view.label:
        label = escape(view.label)
        out.append(f'<text class="label" x="{x}" y="{y}">{label}{stale}</text>')
    dot_r = 3.5 if lay.brand_text else 3
    cy = _n(y - lay.meta_size * 0.36)
    out.append(f'<circle class="dot" cx="{_n(right - dot_r)}" cy="{cy}" r="{dot_r}"/>')
    if lay.brand_text:
        out.append(
            f'<text class="brand" x="{_n(right - 2 * dot_r - 5)}" y="{y}" '
            f'text-anchor="end">Spotify</text>'
        )
    return "".join(out)


def _bar(progress: float | None, x: int, y: int, width: int) -> str:
    if progress is None:
        return ""
    return (
        f'<g class="progress"><rect class="track" x="{x}" y="{y}" width="{width}" height="4" '
        f'rx="2"/><rect class="fill" x="{x}" y="{y}" width="{_n(width * progress)}" height="4" '
        f'rx="2"/></g>'
    )


def _n(value: float) -> str:
    """A coordinate with at most two decimals and no trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _palette(p: Palette) -> str:
    return (
        f".bg{{fill:{p.bg};stroke:{p.border}}}"
        f".a1{{stop-color:{p.art1}}}.a2{{stop-color:{p.art2}}}"
        f".note{{stroke:{p.icon}}}"
        f".title{{fill:{p.fg}}}.sub,.label{{fill:{p.muted}}}"
        f".brand{{fill:{p.accent_text}}}.dot{{fill:{p.accent}}}"
        f".stale{{fill:{p.stale}}}"
        f".track{{fill:{p.track}}}.fill{{fill:{p.fill}}}"
        f".playing .fill,.eq.live rect{{fill:{p.accent}}}.eq.still rect{{fill:{p.muted}}}"
    )


def _css(palette: Palette, dark: Palette | None, lay: Layout, view: _View) -> str:
    css = [
        f"svg{{font-family:{lay.font}}}",
        f".label,.brand{{font-size:{lay.meta_size}px;font-weight:600}}",
        ".label{letter-spacing:.06em;text-transform:uppercase}",
        ".stale{letter-spacing:.02em;text-transform:none}",
        f".title{{font-size:{lay.title_size}px;font-weight:{lay.title_weight}}}",
        f".sub{{font-size:{lay.sub_size}px}}",
        ".note{fill:none;stroke-width:1.8;stroke-linecap:round;stroke-linejoin:round}",
        _palette(palette),
    ]
    if dark is not None:
        css.append(f"@media (prefers-color-scheme:dark){{{_palette(dark)}}}")
    if view.state in ("idle", "ad", "reconnect", "not-found", "unavailable"):
        css.append(".title{font-weight:600;fill-opacity:.72}")
    if view.state == "last-played":
        # Dimmed, so yesterday's track never reads as live.
        css.append(".cover{opacity:.5;filter:grayscale(.7)}.title,.sub{fill-opacity:.7}")
        css.append(".title{font-weight:600}")
    if view.state == "reconnect":
        css.append(".dot{fill-opacity:.45}")
    if view.eq == "live":
        css.append(
            ".eq rect{transform-box:fill-box;transform-origin:50% 100%;"
            "animation:np-eq .9s ease-in-out infinite alternate}"
            ".eq rect:nth-child(2){animation-duration:.7s;animation-delay:-.3s}"
            ".eq rect:nth-child(3){animation-duration:1.1s;animation-delay:-.6s}"
            ".eq rect:nth-child(4){animation-duration:.8s;animation-delay:-.15s}"
            "@keyframes np-eq{from{transform:scaleY(.25)}to{transform:scaleY(1)}}"
            "@media (prefers-reduced-motion:reduce){.eq rect{animation:none}"
            ".eq rect:nth-child(odd){transform:scaleY(.55)}}"
        )
    return "".join(css)
