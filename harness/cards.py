"""A card rendered from a playing track with a generated cover, at a fixed time; a PNG answer read
back."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
from PIL import Image

from nowplaying.cards.card import render_card
from nowplaying.cards.options import CardOptions
from nowplaying.cards.themes import Theme
from nowplaying.schema import parse_state

NOW = 1_767_225_600.0


def cover_uri(rgb: tuple[int, int, int] = (200, 60, 90)) -> str:
    """A 64x64 PNG of one colour, as a data: URI."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), rgb).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def track(title: str = "Midnight City", artist: str = "M83") -> dict[str, Any]:
    """The public JSON of a track playing."""
    return {
        "isPlaying": True,
        "type": "track",
        "title": title,
        "artist": artist,
        "albumImageUrl": "https://i.scdn.co/image/x",
        "songUrl": "https://open.spotify.com/track/x",
        "progressMs": 61_000,
        "durationMs": 240_000,
    }


def card(title: str = "Midnight City", theme: Theme = Theme.LIGHT, **kw: Any) -> str:
    """The SVG card of ``track(title)`` with a cover, in ``theme``."""
    options = CardOptions(theme=theme, **kw)
    return render_card(parse_state(track(title)), options, cover=cover_uri(), now=NOW)


def png_of(response: httpx.Response, status: int = 200) -> Image.Image:
    """The PNG a public image route answered (``status``, image/png, open to any origin)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["access-control-allow-origin"] == "*"
    im = Image.open(io.BytesIO(response.content))
    assert im.format == "PNG"
    return im
