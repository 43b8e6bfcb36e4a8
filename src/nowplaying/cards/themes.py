"""The one theme set: the SVG card, the embed page and the widget all draw from it.

The card turns a spec into fills and coordinates, :func:`stylesheet` turns the same specs into
CSS custom properties for the HTML widget, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "THEMES",
    "Cover",
    "Layout",
    "Palette",
    "Theme",
    "ThemeSpec",
    "custom_properties",
    "spec",
    "stylesheet",
]


class Theme(StrEnum):
    """The looks a card, embed or widget can take (``?theme=``)."""

    AUTO = "auto"
    """Light, or dark when the viewer's system is (``prefers-color-scheme``)."""
    LIGHT = "light"
    DARK = "dark"
    COMPACT = "compact"
    """A smaller card that follows the system's light or dark."""
    SPOTIFY = "spotify"
    """Spotify's own embed: the cover fills the left edge, white on near-black."""
    APPLE = "apple"
    """Apple-Music-like: soft, red accent, elapsed and remaining time as ``m:ss``."""
    KARAOKE = "karaoke"
    """A big title on a deep stage, for screens and streams."""
    BADGE = "badge"
    """A minimal one-line text badge, shields-style."""
    BLUR = "blur"
    """The cover, blurred, as the background."""
    COVER = "cover"
    """The cover's own colours: a muted background and a vivid accent (dark without a cover)."""


class Cover(StrEnum):
    """How the cover sits in the card."""

    SQUARE = "square"
    """A rounded square inside the padding, on the left."""
    BLEED = "bleed"
    """Fills the left edge from top to bottom, no padding around it."""
    BACKDROP = "backdrop"
    """A square on the left, and the same image blurred behind the whole card."""
    NONE = "none"
    """No cover at all (a text badge)."""


@dataclass(frozen=True, slots=True)
class Palette:
    """A theme's colours, as CSS colour strings. Field ``x_y`` is custom property ``--np-x-y``."""

    bg: str
    """Card background."""
    border: str
    fg: str
    """Title text."""
    muted: str
    """Artist, label and secondary text."""
    track: str
    """The unfilled progress bar."""
    fill: str
    """The filled progress bar while paused (playing uses the accent)."""
    accent: str
    """Equalizer, dot, progress while playing."""
    accent_text: str
    """Accent-coloured text (the brand), readable on ``bg``."""
    stale: str
    """The "Delayed" marker."""
    art1: str
    art2: str
    """The placeholder cover's gradient, top-left to bottom-right."""
    icon: str
    """The placeholder's note glyph."""
    shadow: str = "none"
    """The HTML widget's box shadow (SVG cards draw none)."""
    focus: str = "#1a73e8"
    """The HTML widget's focus ring."""

    def items(self) -> Iterator[tuple[str, str]]:
        """``(custom property, value)`` pairs, in field order."""
        for f in fields(self):
            yield "--np-" + f.name.replace("_", "-"), getattr(self, f.name)

    def but(self, **colours: str | None) -> Palette:
        """This palette with some colours replaced (``None`` keeps the theme's)."""
        return replace(self, **{k: v for k, v in colours.items() if v is not None})


@dataclass(frozen=True, slots=True)
class Layout:
    """Geometry and type of one look, in px. ``*_units`` are character budgets (wide glyphs 2)."""

    width: int
    height: int
    pad: int
    art: int
    """Cover size (square and backdrop); for ``BLEED`` the cover is ``height`` square."""
    radius: int
    art_radius: int
    gap: int
    meta_size: int
    title_size: int
    sub_size: int
    meta_y: int
    title_y: int
    sub_y: int
    bar_y: int
    title_units: int
    sub_units: int
    brand_text: bool
    """"Spotify" written beside the dot (else the dot alone)."""
    cover: Cover = Cover.SQUARE
    times: bool = False
    """Elapsed and remaining time (``m:ss``) under the progress bar."""
    label: bool = True
    """The small uppercase state line above the title."""
    title_weight: int = 650
    font: str = (
        'system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif,'
        '"Apple Color Emoji","Segoe UI Emoji"'
    )

    def items(self) -> Iterator[tuple[str, str]]:
        """The CSS custom properties the widget reads (sizes with ``px``)."""
        px = ("width", "height", "pad", "art", "radius", "art_radius", "gap")
        for name in px:
            yield "--np-" + name.replace("_", "-") + "-px", f"{getattr(self, name)}px"
        for name in ("meta_size", "title_size", "sub_size"):
            yield "--np-" + name.replace("_", "-"), f"{getattr(self, name)}px"
        yield "--np-title-weight", str(self.title_weight)
        yield "--np-font", self.font


@dataclass(frozen=True, slots=True)
class ThemeSpec:
    """One look: colours (and dark colours under ``prefers-color-scheme``), and geometry."""

    theme: Theme
    label: str
    """A human name, for pickers and galleries."""
    palette: Palette
    layout: Layout
    dark: Palette | None = None
    """When set, these colours apply under ``prefers-color-scheme: dark``."""


LIGHT = Palette(
    bg="#ffffff",
    border="rgba(0,0,0,.1)",
    fg="#121212",
    muted="#5e6166",
    track="rgba(0,0,0,.09)",
    fill="#8c9096",
    accent="#1db954",
    accent_text="#127a39",
    stale="#a15c07",
    art1="#eceef1",
    art2="#d9dde2",
    icon="#9aa0a6",
    shadow="0 1px 2px rgba(0,0,0,.05),0 8px 24px rgba(0,0,0,.07)",
)
DARK = Palette(
    bg="#181818",
    border="rgba(255,255,255,.1)",
    fg="#f2f2f2",
    muted="#a7a7a7",
    track="rgba(255,255,255,.14)",
    fill="#8a8a8a",
    accent="#1db954",
    accent_text="#1ed760",
    stale="#f0b54a",
    art1="#2a2a2a",
    art2="#363636",
    icon="#6f6f6f",
    shadow="0 1px 2px rgba(0,0,0,.4),0 8px 24px rgba(0,0,0,.35)",
    focus="#8ab4f8",
)
_COVER = DARK.but(bg="#1e1b24", art1="#2d2935", art2="#3a3544")
"""The ``cover`` theme before a cover gives it colours: a quiet dark, slightly violet."""
_SPOTIFY = Palette(
    bg="#121212",
    border="rgba(255,255,255,.06)",
    fg="#ffffff",
    muted="#b3b3b3",
    track="rgba(255,255,255,.22)",
    fill="#b3b3b3",
    accent="#1ed760",
    accent_text="#1ed760",
    stale="#f0b54a",
    art1="#333333",
    art2="#1f1f1f",
    icon="#7a7a7a",
    shadow="0 8px 24px rgba(0,0,0,.5)",
    focus="#8ab4f8",
)
_APPLE = Palette(
    bg="#fbfbfd",
    border="rgba(0,0,0,.08)",
    fg="#1d1d1f",
    muted="#6e6e73",
    track="rgba(0,0,0,.1)",
    fill="#8e8e93",
    accent="#fa2d48",
    accent_text="#d70f2c",
    stale="#b25000",
    art1="#f2f2f7",
    art2="#e5e5ea",
    icon="#aeaeb2",
    shadow="0 2px 6px rgba(0,0,0,.06),0 12px 32px rgba(0,0,0,.08)",
    focus="#0071e3",
)
_APPLE_DARK = Palette(
    bg="#1c1c1e",
    border="rgba(255,255,255,.08)",
    fg="#f5f5f7",
    muted="#98989d",
    track="rgba(255,255,255,.16)",
    fill="#8e8e93",
    accent="#fa2d48",
    accent_text="#ff4f64",
    stale="#ffb340",
    art1="#2c2c2e",
    art2="#3a3a3c",
    icon="#636366",
    shadow="0 2px 6px rgba(0,0,0,.4),0 12px 32px rgba(0,0,0,.4)",
    focus="#0a84ff",
)
_KARAOKE = Palette(
    bg="#1a0b2e",
    border="rgba(255,255,255,.08)",
    fg="#fff6fd",
    muted="#c9b6e4",
    track="rgba(255,255,255,.16)",
    fill="#9d86c4",
    accent="#ff3cac",
    accent_text="#ff7cc8",
    stale="#ffd166",
    art1="#3b1f63",
    art2="#2a1347",
    icon="#8d6cc0",
    shadow="0 10px 30px rgba(26,11,46,.5)",
    focus="#ff7cc8",
)
_BADGE = LIGHT.but(bg="#f6f8fa", border="rgba(31,35,40,.15)", fg="#1f2328", muted="#59636e")
_BADGE_DARK = DARK.but(bg="#161b22", border="rgba(240,246,252,.1)", fg="#f0f6fc", muted="#9198a1")
_BLUR = Palette(
    bg="#20242c",
    border="rgba(255,255,255,.12)",
    fg="#ffffff",
    muted="rgba(255,255,255,.78)",
    track="rgba(255,255,255,.25)",
    fill="rgba(255,255,255,.7)",
    accent="#ffffff",
    accent_text="#ffffff",
    stale="#ffd166",
    art1="#454b57",
    art2="#2b3039",
    icon="rgba(255,255,255,.6)",
    shadow="0 12px 36px rgba(0,0,0,.35)",
    focus="#ffffff",
)

NORMAL = Layout(
    width=420,
    height=120,
    pad=16,
    art=88,
    radius=14,
    art_radius=8,
    gap=16,
    meta_size=11,
    title_size=16,
    sub_size=13,
    meta_y=32,
    title_y=57,
    sub_y=77,
    bar_y=98,
    title_units=30,
    sub_units=40,
    brand_text=True,
)
COMPACT = Layout(
    width=320,
    height=84,
    pad=12,
    art=60,
    radius=12,
    art_radius=6,
    gap=12,
    meta_size=10,
    title_size=14,
    sub_size=12,
    meta_y=23,
    title_y=42,
    sub_y=58,
    bar_y=67,
    title_units=26,
    sub_units=34,
    brand_text=False,
)
_SPOTIFY_LAYOUT = replace(
    NORMAL,
    width=440,
    height=120,
    pad=16,
    art=120,
    radius=12,
    art_radius=0,
    cover=Cover.BLEED,
    title_units=28,
    sub_units=36,
    title_weight=700,
    font='"Circular","Helvetica Neue",Helvetica,Arial,' + NORMAL.font,
)
_APPLE_LAYOUT = replace(
    NORMAL,
    height=132,
    art=100,
    radius=16,
    art_radius=10,
    meta_y=30,
    title_y=54,
    sub_y=74,
    bar_y=94,
    times=True,
    title_units=28,
    sub_units=38,
    title_weight=600,
    font='-apple-system,BlinkMacSystemFont,"SF Pro Text","Helvetica Neue",' + NORMAL.font,
)
_KARAOKE_LAYOUT = replace(
    NORMAL,
    width=520,
    height=160,
    pad=20,
    art=120,
    radius=20,
    art_radius=12,
    gap=20,
    meta_size=12,
    title_size=30,
    sub_size=17,
    meta_y=42,
    title_y=84,
    sub_y=110,
    bar_y=132,
    title_units=20,
    sub_units=34,
    title_weight=800,
)
_BADGE_LAYOUT = Layout(
    width=360,
    height=28,
    pad=10,
    art=0,
    radius=14,
    art_radius=0,
    gap=8,
    meta_size=11,
    title_size=12,
    sub_size=12,
    meta_y=18,
    title_y=18,
    sub_y=18,
    bar_y=0,
    title_units=44,
    sub_units=0,
    brand_text=False,
    cover=Cover.NONE,
    label=False,
    title_weight=600,
)
_BLUR_LAYOUT = replace(NORMAL, cover=Cover.BACKDROP, radius=18, art_radius=10)

_SPECS = (
    ThemeSpec(Theme.AUTO, "Auto (light or dark)", LIGHT, NORMAL, dark=DARK),
    ThemeSpec(Theme.LIGHT, "Light", LIGHT, NORMAL),
    ThemeSpec(Theme.DARK, "Dark", DARK, NORMAL),
    ThemeSpec(Theme.COMPACT, "Compact", LIGHT, COMPACT, dark=DARK),
    ThemeSpec(Theme.SPOTIFY, "Spotify embed", _SPOTIFY, _SPOTIFY_LAYOUT),
    ThemeSpec(Theme.APPLE, "Apple Music", _APPLE, _APPLE_LAYOUT, dark=_APPLE_DARK),
    ThemeSpec(Theme.KARAOKE, "Karaoke", _KARAOKE, _KARAOKE_LAYOUT),
    ThemeSpec(Theme.BADGE, "Badge", _BADGE, _BADGE_LAYOUT, dark=_BADGE_DARK),
    ThemeSpec(Theme.BLUR, "Blurred cover", _BLUR, _BLUR_LAYOUT),
    ThemeSpec(Theme.COVER, "Cover colours", _COVER, NORMAL),
)
THEMES: Mapping[Theme, ThemeSpec] = MappingProxyType({s.theme: s for s in _SPECS})
"""Every theme's spec, in :class:`Theme` order."""


def spec(theme: Theme | str) -> ThemeSpec:
    """The spec of a theme (raises ``ValueError`` for an unknown name)."""
    return THEMES[Theme(theme)]


def custom_properties(palette: Palette, layout: Layout | None = None) -> str:
    """``--np-bg:#fff;--np-fg:...`` for one palette (and layout), as CSS declarations."""
    pairs = list(palette.items())
    pairs.append(("--np-art", f"linear-gradient(135deg,{palette.art1},{palette.art2})"))
    if layout is not None:
        pairs.extend(layout.items())
    return ";".join(f"{name}:{value}" for name, value in pairs)


def _selector(theme: Theme) -> str:
    return f'[data-theme="{theme}"]'


def stylesheet(selector: Callable[[Theme], str] = _selector) -> str:
    """CSS for every theme as custom properties, dark palettes under ``prefers-color-scheme``.

    ``selector(theme)`` names the element a theme applies to (default ``[data-theme="dark"]``).
    The widget styles itself with ``var(--np-bg)``, ``var(--np-radius-px)`` and so on.
    """
    rules = [f"{selector(s.theme)}{{{custom_properties(s.palette, s.layout)}}}" for s in _SPECS]
    dark = [f"{selector(s.theme)}{{{custom_properties(s.dark)}}}" for s in _SPECS if s.dark]
    rules.append("@media (prefers-color-scheme:dark){" + "".join(dark) + "}")
    return "\n".join(rules) + "\n"
