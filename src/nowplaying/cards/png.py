"""Cards as PNG: the SVG card rasterised, for the places that show no SVG (link previews, chats).

The rasteriser is resvg (``resvg-py``), chosen by measurement: it draws every theme the SVG has,
falls back glyph by glyph to any installed font (``deploy/fonts.txt``), and needs no system
library. The same SVG always gives the same PNG on one machine.
"""

from __future__ import annotations

import re

import resvg_py

__all__ = [
    "SCALE",
    "SOCIAL_HEIGHT",
    "SOCIAL_WIDTH",
    "RasteriseError",
    "draw",
    "rasterise",
    "size_of",
    "social",
]

SCALE = 2.0
"""The card's PNG is drawn at twice its CSS size, like a screenshot on a high-density screen."""
SOCIAL_WIDTH = 1200
SOCIAL_HEIGHT = 630
"""The size Open Graph and Twitter's ``summary_large_image`` ask for (1.91:1)."""
_MARGIN = 60
_SIZE = re.compile(r'<svg [^>]*?width="(\d+)" height="(\d+)"')
_BG = re.compile(r"\.bg\{fill:(#[0-9a-fA-F]{6})")
_DARK_CANVAS = "#121212"
_WEIGHT = re.compile(r"font-weight:(\d+)")


class RasteriseError(ValueError):
    """resvg refused the SVG (it never does for a card; a bug, not bad input)."""


def rasterise(svg: str, *, scale: float = SCALE) -> bytes:
    """The PNG of ``svg`` (a card), ``scale`` times its size."""
    svg = _WEIGHT.sub(_hundreds, svg)
    try:
        return bytes(resvg_py.svg_to_bytes(svg_string=svg, zoom=scale))
    except ValueError as e:
        raise RasteriseError(str(e)) from e


def social(svg: str) -> bytes:
    """A 1200x630 PNG: the card centred and enlarged on its own background colour."""
    width, height = size_of(svg)
    scale = min((SOCIAL_WIDTH - 2 * _MARGIN) / width, (SOCIAL_HEIGHT - 2 * _MARGIN) / height)
    x = (SOCIAL_WIDTH - width * scale) / 2
    y = (SOCIAL_HEIGHT - height * scale) / 2
    found = _BG.search(svg)
    canvas = found.group(1) if found else _DARK_CANVAS
    page = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SOCIAL_WIDTH}" '
        f'height="{SOCIAL_HEIGHT}" viewBox="0 0 {SOCIAL_WIDTH} {SOCIAL_HEIGHT}">'
        f'<rect width="{SOCIAL_WIDTH}" height="{SOCIAL_HEIGHT}" fill="{canvas}"/>'
        f'<g transform="translate({x:.1f} {y:.1f}) scale({scale:.4f})">{svg}</g></svg>'
    )
    return rasterise(page, scale=1.0)


def size_of(svg: str) -> tuple[int, int]:
    """The card's CSS size, from its root element's ``width`` and ``height``."""
    found = _SIZE.match(svg)
    if found is None:
        raise RasteriseError("not a card: no width and height on its <svg>")
    return int(found.group(1)), int(found.group(2))


def _hundreds(weight: re.Match[str]) -> str:
    """A CSS weight rounded to a multiple of 100: resvg reads ``650`` as no weight at all (normal),
    where a browser picks the bold face."""
    return f"font-weight:{max(100, min(900, (int(weight.group(1)) + 50) // 100 * 100))}"


def draw(svg: str, fmt: str) -> bytes:
    """``svg`` as ``fmt`` (``png``: :func:`rasterise`; ``social``: :func:`social`): the function
    the card cache's worker process runs (module level, so it pickles by name)."""
    return social(svg) if fmt == "social" else rasterise(svg)
