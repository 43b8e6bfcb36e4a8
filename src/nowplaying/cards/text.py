"""Text for a card: hostile strings made safe, measured and cut to fit; how long ago, in words.

SVG cannot measure text, so widths are counted in "average Latin letter" units: a wide (CJK)
character is two, a combining mark or joiner none.
"""

from __future__ import annotations

import functools
import math
import unicodedata
from datetime import UTC, datetime

__all__ = ["clean", "fit", "played_ago", "width"]

# Bidi embeddings, overrides and isolates, and the two characters XML 1.0 forbids outright.
_DROP = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufffe\uffff")
_ZWJ = "\u200d"
_ELLIPSIS = "…"


@functools.lru_cache(maxsize=4096)
def clean(value: object) -> str:
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


def width(text: str) -> int:
    """How wide ``text`` is, in units."""
    return sum(map(_units, text))


def _units(ch: str) -> int:
    if ch == _ZWJ or unicodedata.combining(ch) or "\ufe00" <= ch <= "\ufe0f":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


@functools.lru_cache(maxsize=4096)
def fit(text: str, units: int) -> str:
    """``text`` cut to ``units`` with an ellipsis, never splitting a mark from its letter."""
    if width(text) <= units:
        return text
    kept: list[str] = []
    used = 0
    for ch in text:
        w = _units(ch)
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


def played_ago(played_at: datetime, now: float) -> str:
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
