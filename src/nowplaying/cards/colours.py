"""Colours taken from the album art: the ``cover`` theme and ``accent=cover`` in any theme.

Every text colour is moved in lightness until it reads on its background at WCAG's 4.5:1 or
better (:func:`readable`), so no cover can make a card unreadable.
"""

from __future__ import annotations

import base64
import binascii
import colorsys
import functools
import io
from dataclasses import dataclass

from nowplaying.cards.themes import Palette

__all__ = ["MIN_CONTRAST", "CoverColours", "accented", "contrast", "cover_colours", "painted"]

MIN_CONTRAST = 4.5
"""WCAG 2 level AA for normal text."""
_SAMPLE = 32
_COLOURS = 8
_VIVID_SHARE = 0.03
"""An accent must cover at least this share of the cover (not one stray pixel)."""
RGB = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class CoverColours:
    """What a cover gives: ``#rrggbb`` colours."""

    background: str
    """Muted and dark: white text reads on it at 7:1 or better."""
    vivid: str
    """The cover's liveliest colour, as found (not yet made readable on anything)."""


@functools.lru_cache(maxsize=512)
def cover_colours(cover: str) -> CoverColours | None:
    """The colours of a ``data:image/...;base64,`` cover, or None when it does not decode."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415 - Pillow on the first cover

    try:
        data = base64.b64decode(cover.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (_SAMPLE * 2, _SAMPLE * 2))  # JPEG: decode at a fraction of the size
            small = im.convert("RGB").resize((_SAMPLE, _SAMPLE))
    except (IndexError, binascii.Error, UnidentifiedImageError, OSError, ValueError):
        return None
    quantised = small.quantize(colors=_COLOURS, method=Image.Quantize.MEDIANCUT)
    flat = quantised.getpalette() or []
    counts = quantised.getcolors() or []
    swatches = [
        (n, _rgb(flat[3 * i : 3 * i + 3]))
        for n, i in counts
        if isinstance(i, int) and 3 * i + 2 < len(flat)
    ]
    if not swatches:
        return None
    total = sum(n for n, _ in swatches)
    common = max(swatches, key=lambda s: s[0])[1]
    lively = [s for s in swatches if s[0] >= _VIVID_SHARE * total] or swatches
    vivid = max(lively, key=lambda s: _liveliness(s[1]))[1]
    return CoverColours(background=_hex(_muted(common)), vivid=_hex(vivid))


def painted(base: Palette, colours: CoverColours) -> Palette:
    """The ``cover`` theme: ``base``'s roles, in the cover's colours, every text readable."""
    bg = _parse(colours.background)
    fg = readable((1.0, 1.0, 1.0), bg)
    accent = readable(_parse(colours.vivid), bg)
    return base.but(
        bg=_hex(bg),
        border=_hex(_mix(fg, bg, 0.14)),
        fg=_hex(fg),
        muted=_hex(readable(_mix(fg, bg, 0.78), bg)),
        track=_hex(_mix(fg, bg, 0.22)),
        fill=_hex(_mix(fg, bg, 0.6)),
        accent=_hex(accent),
        accent_text=_hex(accent),
        icon=_hex(_mix(fg, bg, 0.6)),
        art1=_hex(_mix(fg, bg, 0.12)),
        art2=_hex(_mix(fg, bg, 0.05)),
    )


def accented(base: Palette, colours: CoverColours) -> Palette:
    """``base`` with the cover's accent, made readable on ``base``'s background (when that is a
    plain colour; on anything else, the accent as found)."""
    try:
        bg = _parse(base.bg)
    except ValueError:
        return base.but(accent=colours.vivid, accent_text=colours.vivid)
    accent = _hex(readable(_parse(colours.vivid), bg))
    return base.but(accent=accent, accent_text=accent)


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    return _contrast(_parse(a), _parse(b))


def readable(colour: RGB, bg: RGB, minimum: float = MIN_CONTRAST) -> RGB:
    """``colour`` moved in lightness, away from ``bg``, until it reads on ``bg`` at ``minimum``
    (black or white at worst: one of them always reads at 4.5:1)."""
    if _contrast(colour, bg) >= minimum:
        return colour
    h, lightness, s = colorsys.rgb_to_hls(*colour)
    lighter = _luminance(bg) < 0.18  # a dark background wants lighter text
    for step in range(1, 21):
        shade = min(1.0, lightness + step * 0.05) if lighter else max(0.0, lightness - step * 0.05)
        moved = colorsys.hls_to_rgb(h, shade, s)
        if _contrast(moved, bg) >= minimum:
            return moved
    white, black = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)
    return white if _contrast(white, bg) >= _contrast(black, bg) else black


def _muted(colour: RGB) -> RGB:
    """A dark, quiet version of ``colour`` that white reads on at 7:1 or better."""
    h, lightness, s = colorsys.rgb_to_hls(*colour)
    muted = colorsys.hls_to_rgb(h, min(lightness, 0.2), min(s, 0.45))
    while _contrast((1.0, 1.0, 1.0), muted) < 7.0:
        h2, l2, s2 = colorsys.rgb_to_hls(*muted)
        muted = colorsys.hls_to_rgb(h2, l2 * 0.85, s2)
    return muted


def _liveliness(colour: RGB) -> float:
    _, s, v = colorsys.rgb_to_hsv(*colour)
    return s * v


def _mix(a: RGB, b: RGB, share_of_a: float) -> RGB:
    r1, g1, b1 = a
    r2, g2, b2 = b
    t = share_of_a
    return (r1 * t + r2 * (1 - t), g1 * t + g2 * (1 - t), b1 * t + b2 * (1 - t))


def _contrast(a: RGB, b: RGB) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _luminance(colour: RGB) -> float:
    """WCAG 2 relative luminance of an sRGB colour (each channel 0-1)."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(_quantised(c)) for c in colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _quantised(c: float) -> float:
    """The channel as it will be written (two hex digits), so the ratio holds for the output."""
    return round(max(0.0, min(1.0, c)) * 255) / 255


def _rgb(values: list[int]) -> RGB:
    r, g, b = values
    return (r / 255, g / 255, b / 255)


def _parse(colour: str) -> RGB:
    """``#rrggbb`` (an alpha suffix is refused: the ratio needs an opaque colour)."""
    if len(colour) != 7 or not colour.startswith("#"):
        raise ValueError(f"not an opaque #rrggbb colour: {colour!r}")
    return _rgb([int(colour[i : i + 2], 16) for i in (1, 3, 5)])


def _hex(colour: RGB) -> str:
    return "#" + "".join(f"{round(max(0.0, min(1.0, c)) * 255):02x}" for c in colour)
