"""Cover art the simulator draws itself: small PNG gradients, so demo mode needs no network.

Served at ``/covers/{name}-{width}x{height}.png`` (or ``/covers/{name}.png`` for 300x300). The
colours come from a hash of ``name``, so each album keeps its look.
"""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from functools import lru_cache

MAX_SIDE = 1024
DEFAULT_SIDE = 300
_FILE = re.compile(r"(?P<name>[a-z0-9][a-z0-9-]{0,63}?)(?:-(?P<w>\d{1,4})x(?P<h>\d{1,4}))?\.png")


def sizes_for(width: int, height: int) -> list[tuple[int, int]]:
    """The sizes Spotify lists for an image ``width`` wide (up to three), widest first."""
    return [(width, height)] + [
        (side, max(1, round(height * side / width))) for side in (300, 64) if side < width
    ]


def cover_path(name: str, width: int, height: int) -> str:
    """The path (below the simulator's base URL) of cover ``name`` at the given size."""
    return f"/covers/{name}-{width}x{height}.png"


def parse_file(filename: str) -> tuple[str, int, int] | None:
    """Split a cover file name into ``(name, width, height)``; None if it is not one we serve."""
    match = _FILE.fullmatch(filename)
    if match is None:
        return None
    width = int(match["w"] or DEFAULT_SIDE)
    height = int(match["h"] or DEFAULT_SIDE)
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        return None
    return match["name"], width, height


@lru_cache(maxsize=128)
def render_png(name: str, width: int, height: int) -> bytes:
    """A diagonal two-colour gradient PNG (8-bit RGB) for ``name``."""
    digest = hashlib.sha256(name.encode()).digest()
    start, end = digest[0:3], digest[3:6]
    span = width + height - 1
    # One strip of colours along the diagonal; each row is a window onto it.
    strip = bytearray()
    for i in range(span):
        t = i / max(1, span - 1)
        strip += bytes(round(a + (b - a) * t) for a, b in zip(start, end, strict=True))
    raw = bytearray()
    for y in range(height):
        raw.append(0)  # filter type: none
        raw += strip[y * 3 : (y + width) * 3]
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(raw), 6))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
