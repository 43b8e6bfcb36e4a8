"""The SVG card: what someone plays, as a self-contained image for READMEs and ``<img>`` tags.

Progress is drawn in :data:`PROGRESS_STEP_MS` steps, so the bytes (and the ETag) hold between
real changes. Upstream strings are hostile: they reach the output only as escaped text nodes,
never an attribute, and the only URL is a ``data:`` cover matching :data:`COVER_URI`. Styling is
an embedded ``<style>`` because GitHub keeps it in SVGs shown through ``<img>``.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, replace
from typing import Literal
from xml.sax.saxutils import escape

from nowplaying.cards.colours import accented, cover_colours, painted
from nowplaying.cards.options import COVER_ACCENT, DEFAULT, BadOption, CardOptions, Hide, Idle
from nowplaying.cards.text import clean, fit, played_ago, width
from nowplaying.cards.themes import COMPACT, Cover, Layout, Palette, Theme, ThemeSpec, spec
from nowplaying.schema import Ad, Error, ErrorCode, Nothing, Playing, State

__all__ = [
    "COVER_URI",
    "PROGRESS_STEP_MS",
    "Look",
    "card_etag",
    "equalizer",
    "look",
    "placeholder",
    "quantise",
    "render_bad_option",
    "render_card",
    "style",
]

PROGRESS_STEP_MS = 5000
"""Progress is drawn in steps this long: the card's bytes change at most this often."""

COVER_URI = re.compile(r"data:image/(?:png|jpeg|gif|webp);base64,[A-Za-z0-9+/]+={0,2}")
# A music note in a 24x24 box, the widget's placeholder glyph.
_NOTE = "M9 18V5.5l11-2V16M9 18a3 3 0 1 1-6 0 3 3 0 0 1 6 0Zm11-2a3 3 0 1 1-6 0 3 3 0 0 1 6 0Z"
_IDLE_TEXT = "Not playing"
VIA = {"lastfm": "via Last.fm", "listenbrainz": "via ListenBrainz", "push": "from a player"}
"""What a card says of a source other than Spotify (the widget's ``VIA`` says the same)."""


@dataclass(frozen=True, slots=True)
class _View:
    """What the card says, decided from the payload before any drawing."""

    state: str
    """A CSS class: playing, paused, last-played, idle, ad, reconnect, not-found, unavailable,
    bad-option."""
    label: str
    """The small uppercase line above the title; empty when the title says it all."""
    title: str
    subtitle: str
    heading: str
    """The accessible name, in ``<title>``."""
    progress: float | None = None
    eq: Literal["live", "still"] | None = None
    stale: bool = False
    elapsed_ms: int | None = None
    duration_ms: int | None = None
    via: str = ""
    """The source, when not Spotify ("via Last.fm"); the brand then says no "Spotify"."""


@dataclass(frozen=True, slots=True)
class Look:
    """A theme with the query's changes applied: the colours and geometry to draw with."""

    palette: Palette
    dark: Palette | None
    layout: Layout
    transparent: bool


@functools.lru_cache(maxsize=512)
def look(options: CardOptions) -> Look:
    """The colours and geometry ``options`` ask for (cached: options are few and frozen)."""
    return _look(spec(options.theme), options)


def _look(theme: ThemeSpec, options: CardOptions) -> Look:
    lay = COMPACT if options.compact else theme.layout
    if Hide.COVER in options.hide and lay.cover is not Cover.NONE:
        lay = _resize(lay, replace(lay, cover=Cover.NONE, art=0, gap=0))
    if options.width is not None:
        lay = _resize(lay, replace(lay, width=options.width))
    if options.radius is not None:
        lay = replace(lay, radius=min(options.radius, lay.height // 2))
    accent = None if options.accent == COVER_ACCENT else options.accent
    colours = {"bg": options.bg, "fg": options.text, "accent": accent}
    if options.text is not None and len(options.text) == 7:  # shades of the owner's text colour
        colours.update(
            muted=options.text + "bf", track=options.text + "26", fill=options.text + "80"
        )
    if accent is not None:
        colours["accent_text"] = accent
    palette = theme.palette.but(**colours)
    dark = theme.dark.but(**colours) if theme.dark is not None else None
    if options.bg is not None or options.text is not None:
        dark = None  # the owner chose the colours: one scheme
    return Look(palette, dark, lay, options.transparent)


def _resize(old: Layout, new: Layout) -> Layout:
    """``new`` with its character budgets scaled to its text column."""
    before, after = _column(old), _column(new)
    scale = after / before if before > 0 else 1.0
    return replace(
        new,
        title_units=max(8, round(old.title_units * scale)),
        sub_units=max(8, round(old.sub_units * scale)) if old.sub_units else 0,
    )


def _column(lay: Layout) -> int:
    return lay.width - 2 * lay.pad - _x0_offset(lay)


def _x0_offset(lay: Layout) -> int:
    """How far right of the padding the text column starts."""
    if lay.cover is Cover.BLEED:
        return lay.height - lay.pad + lay.gap
    if lay.cover is Cover.NONE:
        return 0
    return lay.art + lay.gap


def quantise(progress_ms: int | None) -> int | None:
    """A position rounded down to a :data:`PROGRESS_STEP_MS` step (what the card draws)."""
    if progress_ms is None:
        return None
    return max(0, progress_ms) // PROGRESS_STEP_MS * PROGRESS_STEP_MS


def render_card(
    state: State,
    options: CardOptions = DEFAULT,
    *,
    cover: str | None = None,
    now: float,
) -> str:
    """The SVG card for one state (what plays, or an error such as ``not_found``).

    ``cover`` must be a ``data:image/{png,jpeg,gif,webp};base64,...`` URI; anything else is ignored
    and the neutral placeholder is drawn instead. ``now`` (seconds since the epoch) dates the
    "Last played" label. The same arguments always give the same string.
    """
    if options.idle is Idle.HIDE and isinstance(state, Nothing):
        return _hidden()
    view = _view(state, now, options)
    image = cover if cover is not None and _valid_cover(cover) else None
    lk = look(options)
    if image is not None and options.cover_colours:
        lk = _coloured(lk, image, whole=options.theme is Theme.COVER)
    return _draw(view, lk, image)


@functools.lru_cache(maxsize=256)
def _coloured(lk: Look, cover: str, *, whole: bool) -> Look:
    """``lk`` in the cover's colours: all of them (the ``cover`` theme), or the accent."""
    found = cover_colours(cover)
    if found is None:
        return lk
    paint = painted if whole else accented
    return replace(
        lk,
        palette=paint(lk.palette, found),
        dark=None if lk.dark is None or whole else paint(lk.dark, found),
    )


@functools.lru_cache(maxsize=256)
def _valid_cover(cover: str) -> bool:
    """Checked once per cover string (the cover cache hands out the same few, again and again)."""
    return COVER_URI.fullmatch(cover) is not None


def render_bad_option(error: BadOption, theme: Theme = Theme.AUTO) -> str:
    """A card that names the bad parameter: image proxies show nothing for an error status.

    Drawn in ``theme`` (when the theme itself was fine), so it sits where the card will.
    """
    heading = f"Bad parameter {error.param}: {error.message}"
    view = _View("bad-option", "", f"Bad parameter: {error.param}", error.message, heading)
    return _draw(view, look(CardOptions(theme=theme)), None)


def card_etag(card: str | bytes) -> str:
    """A strong, quoted ETag for a rendered card (an SVG string, or an image's bytes)."""
    body = card.encode("utf-8") if isinstance(card, str) else card
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _hidden() -> str:
    """Nothing to see: a 1x1 transparent image (the README keeps no gap)."""
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1" viewBox="0 0 1 1" '
        'role="img" aria-labelledby="np-title" class="np hidden">'
        f'<title id="np-title">{_IDLE_TEXT}</title></svg>\n'
    )


# -- what to say --------------------------------------------------------------------------------


def _view(state: State, now: float, options: CardOptions) -> _View:
    if isinstance(state, Error):
        return _error_view(state.error)
    stale = state.stale is True
    if isinstance(state, Ad):
        return _View("ad", "", "Advertisement", "Spotify will be right back", "Advertisement")
    hide_artist = Hide.ARTIST in options.hide
    if isinstance(state, Playing) and clean(state.title):
        title, artist = clean(state.title), "" if hide_artist else clean(state.artist)
        label = "Now playing" if state.is_playing else "Paused"
        if state.kind == "episode":
            label += " · Podcast"
        via = VIA.get(state.source, "")
        heading = f"{'Now playing' if state.is_playing else 'Paused'}: {_by(title, artist)}"
        if via:
            label, heading = f"{label} · {via}", f"{heading} ({via})"
        position = quantise(state.progress_ms)
        progress = None if Hide.PROGRESS in options.hide else _progress(position, state.duration_ms)
        eq: Literal["live", "still"] = "live" if state.is_playing else "still"
        return _View(
            state="playing" if state.is_playing else "paused",
            label=label,
            title=title,
            subtitle=artist,
            heading=heading + (" (delayed)" if stale else ""),
            progress=progress,
            eq=None if Hide.EQUALIZER in options.hide else eq,
            stale=stale,
            elapsed_ms=position if progress is not None else None,
            duration_ms=state.duration_ms,
            via=via,
        )
    last = state.last_played if isinstance(state, Nothing) else None
    if options.idle is Idle.LAST and last is not None and clean(last.title):
        title, artist = clean(last.title), "" if hide_artist else clean(last.artist)
        age = played_ago(last.played_at, now)
        label = f"Last played · {age}" if age else "Last played"
        heading = f"Not playing. Last played: {_by(title, artist)}" + (f" ({age})" if age else "")
        return _View("last-played", label, title, artist, heading, stale=stale)
    text = clean(options.idle_text) or _IDLE_TEXT
    notice = state.notice if isinstance(state, Nothing) else None
    if notice is not None:  # a source its owner keeps private: say so (escaped as any text)
        sub = clean(notice.message)
        return _View("idle", "", text, sub, f"{text}. {sub}")
    sub = "Nothing on Spotify right now" if options.idle_text is None else ""
    return _View("idle", "", text, sub, text)


def _error_view(code: ErrorCode) -> _View:
    if code is ErrorCode.RECONNECT_REQUIRED:
        sub = "Spotify access has expired"
        return _View("reconnect", "", "Reconnect needed", sub, f"Reconnect needed: {sub}")
    if code is ErrorCode.FORBIDDEN:
        sub = "The owner does not share what they played"
        return _View("not-found", "", "Not shared", sub, f"Not shared: {sub}")
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


# -- drawing ------------------------------------------------------------------------------------


def _draw(view: _View, lk: Look, cover: str | None) -> str:
    lay = lk.layout
    if lay.cover is Cover.NONE and lay.height < 40:
        return _draw_badge(view, lk)
    w, h, pad = lay.width, lay.height, lay.pad
    x0 = pad + _x0_offset(lay)
    right = w - pad
    col = right - x0
    # Without the label row, a message's two lines move up to sit centred on the art.
    lift = 0 if view.label else 4
    # The message states keep their placeholder however the cover is asked to sit.
    parts = [
        _open(w, h, view),
        f"<style>{style(lk, view.state, view.eq)}</style>",
        "<defs>",
        _clip_card(w, h, lay.radius),
        f'<clipPath id="np-col"><rect x="{x0}" y="0" width="{col}" height="{h}"/></clipPath>',
        _defs_art(lay),
        "</defs>",
        f'<rect class="bg" x=".5" y=".5" width="{w - 1}" height="{h - 1}" rx="{lay.radius}"/>',
        _backdrop(lay, cover) if lay.cover is Cover.BACKDROP else "",
        _art(lay, cover),
        _meta(view, lay, x0, right),
        '<g clip-path="url(#np-col)">',
        f'<text class="title" x="{x0}" y="{lay.title_y - lift}" unicode-bidi="plaintext">'
        f"{escape(fit(view.title, lay.title_units))}</text>",
        f'<text class="sub" x="{x0}" y="{lay.sub_y - lift}" unicode-bidi="plaintext">'
        f"{escape(fit(view.subtitle, lay.sub_units))}</text>"
        if view.subtitle
        else "",
        "</g>",
        _bar(view.progress, x0, lay.bar_y, col, 4),
        _times(view, lay, x0, right) if lay.times else "",
        "</svg>",
    ]
    return "".join(p for p in parts if p) + "\n"


def _open(w: int, h: int, view: _View) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-labelledby="np-title" class="np {view.state}">'
        f'<title id="np-title">{escape(fit(view.heading, 300))}</title>'
    )


def _clip_card(w: int, h: int, radius: int) -> str:
    return (
        f'<clipPath id="np-card"><rect x=".5" y=".5" width="{w - 1}" height="{h - 1}" '
        f'rx="{radius}"/></clipPath>'
    )


def _art_box(lay: Layout) -> tuple[int, int, int]:
    """x, y and size of the cover."""
    if lay.cover is Cover.BLEED:
        return 0, 0, lay.height
    return lay.pad, (lay.height - lay.art) // 2, lay.art


def _defs_art(lay: Layout) -> str:
    if lay.cover is Cover.NONE:
        return ""
    x, y, size = _art_box(lay)
    radius = 0 if lay.cover is Cover.BLEED else lay.art_radius
    clip = (
        f'<clipPath id="np-art"><rect x="{x}" y="{y}" width="{size}" height="{size}" '
        f'rx="{radius}"/></clipPath>'
    )
    blur = (
        '<filter id="np-blur" x="-10%" y="-10%" width="120%" height="120%">'
        '<feGaussianBlur stdDeviation="18"/></filter>'
        if lay.cover is Cover.BACKDROP
        else ""
    )
    return (
        clip + blur + '<linearGradient id="np-grad" x1="0" y1="0" x2="1" y2="1">'
        '<stop offset="0" class="a1"/><stop offset="1" class="a2"/></linearGradient>'
    )


def _backdrop(lay: Layout, cover: str | None) -> str:
    """The cover, blurred and veiled, behind the whole card (the ``blur`` theme)."""
    if cover is None:
        return ""
    w, h = lay.width, lay.height
    return (
        f'<g clip-path="url(#np-card)"><use href="#np-cover" x="-20" y="{_n(h / 2 - w / 2 - 20)}" '
        f'width="{w + 40}" height="{w + 40}" filter="url(#np-blur)"/>'
        f'<rect class="veil" width="{w}" height="{h}"/></g>'
    )


def _art(lay: Layout, cover: str | None) -> str:
    if lay.cover is Cover.NONE:
        return ""
    x, y, size = _art_box(lay)
    radius = 0 if lay.cover is Cover.BLEED else lay.art_radius
    clip = "np-card" if lay.cover is Cover.BLEED else "np-art"
    base = (
        f'<rect x="{x}" y="{y}" width="{size}" height="{size}" rx="{radius}" '
        f'fill="url(#np-grad)" clip-path="url(#{clip})"/>'
    )
    if cover is not None:
        if lay.cover is Cover.BACKDROP:  # the image once, used twice
            return (
                '<defs><symbol id="np-cover" viewBox="0 0 1 1" preserveAspectRatio="xMidYMid '
                f'slice"><image class="cover" width="1" height="1" preserveAspectRatio="xMidYMid '
                f'slice" href="{cover}"/></symbol></defs>'
                + base
                + f'<g clip-path="url(#np-art)"><use href="#np-cover" x="{x}" y="{y}" '
                f'width="{size}" height="{size}"/></g>'
            )
        return base + (
            f'<image class="cover" x="{x}" y="{y}" width="{size}" height="{size}" '
            f'preserveAspectRatio="xMidYMid slice" clip-path="url(#{clip})" href="{cover}"/>'
        )
    return base + placeholder(x, y, size)


def placeholder(x: float, y: float, size: float) -> str:
    """The note glyph centred in a ``size`` square at ``x, y`` (drawn over the art gradient)."""
    glyph = size * 0.4
    gx = x + (size - glyph) / 2
    gy = y + (size - glyph) / 2
    return (
        f'<path class="note" transform="translate({_n(gx)} {_n(gy)}) scale({_n(glyph / 24)})" '
        f'd="{_NOTE}"/>'
    )


def equalizer(eq: Literal["live", "still"], x: float, y: float, height: float) -> str:
    """Four bars with their baseline at ``y``: resting when paused, animated by CSS when live."""
    top = y - height + 1
    rest = (0.35, 0.6, 0.35, 0.6) if eq == "still" else (1.0, 1.0, 1.0, 1.0)
    bars = "".join(
        f'<rect x="{_n(x + i * 5)}" y="{_n(top + height * (1 - r))}" width="3" '
        f'height="{_n(height * r)}" rx="1"/>'
        for i, r in enumerate(rest)
    )
    return f'<g class="eq {eq}" aria-hidden="true">{bars}</g>'


def _meta(view: _View, lay: Layout, x0: int, right: int) -> str:
    """The small row above the title: equalizer, state label, stale marker, brand."""
    y = lay.meta_y
    out = []
    x = x0
    if view.eq is not None:
        out.append(equalizer(view.eq, x0, y, lay.meta_size))
        x = x0 + 26
    stale = '<tspan class="stale"> · Delayed</tspan>' if view.stale else ""
    if view.label and lay.label:
        label = escape(view.label)
        out.append(f'<text class="label" x="{x}" y="{y}">{label}{stale}</text>')
    dot_r = 3.5 if lay.brand_text else 3
    cy = _n(y - lay.meta_size * 0.36)
    out.append(f'<circle class="dot" cx="{_n(right - dot_r)}" cy="{cy}" r="{dot_r}"/>')
    if lay.brand_text and not view.via:
        out.append(
            f'<text class="brand" x="{_n(right - 2 * dot_r - 5)}" y="{y}" '
            f'text-anchor="end">Spotify</text>'
        )
    return "".join(out)


def _bar(progress: float | None, x: float, y: float, width: float, height: int) -> str:
    if progress is None:
        return ""
    r = height / 2
    return (
        f'<g class="progress"><rect class="track" x="{_n(x)}" y="{_n(y)}" width="{_n(width)}" '
        f'height="{height}" rx="{_n(r)}"/><rect class="fill" x="{_n(x)}" y="{_n(y)}" '
        f'width="{_n(width * progress)}" height="{height}" rx="{_n(r)}"/></g>'
    )


def _times(view: _View, lay: Layout, x0: int, right: int) -> str:
    """Elapsed and remaining time under the bar, as ``1:05`` and ``-2:55``."""
    if view.elapsed_ms is None or view.duration_ms is None or view.duration_ms <= 0:
        return ""
    elapsed = min(view.elapsed_ms, view.duration_ms)
    y = lay.bar_y + 18
    return (
        f'<text class="time" x="{x0}" y="{y}">{_clock(elapsed)}</text>'
        f'<text class="time" x="{right}" y="{y}" text-anchor="end">'
        f"-{_clock(view.duration_ms - elapsed)}</text>"
    )


def _clock(ms: int) -> str:
    seconds = ms // 1000
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


def _draw_badge(view: _View, lk: Look) -> str:
    """One line in a pill: equalizer (or dot), label for what is not live, title, artist."""
    lay = lk.layout
    w, h, pad = lay.width, lay.height, lay.pad
    baseline = lay.title_y
    x0 = pad + 24
    units = lay.title_units
    label = "" if view.state == "playing" or not view.label else view.label + " · "
    if view.state == "playing" and view.via:
        label = view.via + " · "
    title = fit(view.title, max(8, units - len(label)))
    used = len(label) + width(title)
    sub = ""
    if view.subtitle and units - used > 6:
        sub = f'<tspan class="sub"> — {escape(fit(view.subtitle, units - used - 3))}</tspan>'
    if view.eq is not None:
        lead = equalizer(view.eq, pad, h / 2 + 5, 10)
    else:
        lead = f'<circle class="dot" cx="{pad + 8}" cy="{_n(h / 2)}" r="4"/>'
    radius = min(lay.radius, h // 2)
    stale = '<tspan class="stale"> · Delayed</tspan>' if view.stale else ""
    pre = f'<tspan class="label">{escape(label)}</tspan>' if label else ""
    parts = [
        _open(w, h, view),
        f"<style>{style(lk, view.state, view.eq)}</style>",
        "<defs>",
        _clip_card(w, h, radius),
        "</defs>",
        f'<rect class="bg" x=".5" y=".5" width="{w - 1}" height="{h - 1}" rx="{radius}"/>',
        lead,
        f'<text class="title" x="{x0}" y="{baseline}" unicode-bidi="plaintext">'
        f"{pre}{escape(title)}{sub}{stale}</text>",
        '<g clip-path="url(#np-card)">' + _bar(view.progress, 0, h - 2, w, 2) + "</g>"
        if view.progress is not None
        else "",
        "</svg>",
    ]
    return "".join(p for p in parts if p) + "\n"


@functools.lru_cache(maxsize=4096)
def _n(value: float) -> str:
    """A coordinate with at most two decimals and no trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _palette(p: Palette, transparent: bool) -> str:
    bg = ".bg{fill:none;stroke:none}" if transparent else f".bg{{fill:{p.bg};stroke:{p.border}}}"
    return (
        bg + f".a1{{stop-color:{p.art1}}}.a2{{stop-color:{p.art2}}}"
        f".note{{stroke:{p.icon}}}"
        f".title{{fill:{p.fg}}}.sub,.label,.time{{fill:{p.muted}}}"
        f".brand{{fill:{p.accent_text}}}.dot{{fill:{p.accent}}}"
        f".stale{{fill:{p.stale}}}"
        f".track{{fill:{p.track}}}.fill{{fill:{p.fill}}}"
        f".playing .fill,.eq.live rect{{fill:{p.accent}}}.eq.still rect{{fill:{p.muted}}}"
    )


@functools.lru_cache(maxsize=1024)
def style(lk: Look, state: str, eq: str | None) -> str:
    """The card's ``<style>`` for a look and a state (cached: both come from small sets)."""
    lay = lk.layout
    css = [
        f"svg{{font-family:{lay.font}}}",
        f".label,.brand{{font-size:{lay.meta_size}px;font-weight:600}}",
        ".label{letter-spacing:.06em;text-transform:uppercase}",
        ".stale{letter-spacing:.02em;text-transform:none}",
        f".title{{font-size:{lay.title_size}px;font-weight:{lay.title_weight}}}",
        f".sub{{font-size:{lay.sub_size}px}}",
        ".time{font-size:11px;font-variant-numeric:tabular-nums}",
        ".note{fill:none;stroke-width:1.8;stroke-linecap:round;stroke-linejoin:round}",
        ".veil{fill:#000;fill-opacity:.42}",
        _palette(lk.palette, lk.transparent),
    ]
    if lay.height < 40:  # the badge: one line, the label in the title's size
        css.append(".sub{font-weight:400}.label{font-size:inherit;letter-spacing:0}")
    if lk.dark is not None:
        css.append(f"@media (prefers-color-scheme:dark){{{_palette(lk.dark, lk.transparent)}}}")
    if state in ("idle", "ad", "reconnect", "not-found", "unavailable", "bad-option"):
        css.append(".title{font-weight:600;fill-opacity:.72}")
    if state == "bad-option":
        css.append(".title{fill:#c5221f;fill-opacity:1}")
    if state == "last-played":
        # Dimmed, so yesterday's track never reads as live.
        css.append(".cover{opacity:.5;filter:grayscale(.7)}.title,.sub{fill-opacity:.7}")
        css.append(".title{font-weight:600}")
    if state == "reconnect":
        css.append(".dot{fill-opacity:.45}")
    if eq == "live":
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
