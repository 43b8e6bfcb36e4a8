"""The bounds every field from a source (an answer, a push) is held to at the boundary.

A source's parser reads each field through these, so what reaches the engine, the JSON, the
stream and the card is bounded whoever sent it. Text is cut on a grapheme boundary, so an accent
or an emoji sequence is never split. A value no bound can make sane is :class:`OutOfBounds`,
which the source raises as its own error (Spotify: ``BadResponse``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import regex

MAX_TEXT = 512
"""Characters of a title, an artist, an album or a show name."""
MAX_NAMES = 16
"""Names in a list (artists)."""
MAX_URL = 2048
MAX_ID = 256
MAX_DURATION_MS = 24 * 3600 * 1000
ELLIPSIS = "…"
MAX_RETRY_AFTER = 86400.0
"""The longest wait an upstream's ``Retry-After`` is believed for (a day)."""
URL_SCHEMES = frozenset({"https", "http"})

_GRAPHEME = regex.compile(r"\X")


class OutOfBounds(ValueError):
    """A field whose type or value no bound can make sane."""


def text(value: object, *, limit: int = MAX_TEXT) -> str:
    """``value`` (a string or None) cut to ``limit`` characters on a grapheme boundary."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise OutOfBounds(f"text expected, got {type(value).__name__}")
    if len(value) <= limit:
        return value
    # Only the head is examined: the cluster reaching past the cut is in it, and dropped.
    kept = 0
    room = limit - len(ELLIPSIS)
    for cluster in _GRAPHEME.findall(value, 0, limit + 1):
        if kept + len(cluster) > room:
            break
        kept += len(cluster)
    return value[:kept] + ELLIPSIS


def optional_text(value: object, *, limit: int = MAX_TEXT) -> str | None:
    """:func:`text`, keeping None (and an empty string) as None."""
    return text(value, limit=limit) or None


def names(values: Iterable[object]) -> tuple[str, ...]:
    """Non-empty names, each bounded, at most :data:`MAX_NAMES` of them."""
    out: list[str] = []
    for value in values:
        if name := text(value):
            out.append(name)
            if len(out) == MAX_NAMES:
                break
    return tuple(out)


def _number(value: object) -> float | int | None:
    """A JSON number; None when absent or not finite (Python's json reads NaN and Infinity,
    which JSON has not: read as unknown)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OutOfBounds(f"number expected, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def duration_ms(value: object) -> int:
    """A duration in milliseconds within 0..24 h (0 when absent or not finite)."""
    number = _number(value)
    return 0 if number is None else int(min(max(number, 0), MAX_DURATION_MS))


def progress_ms(value: object, duration: int) -> int | None:
    """A position in milliseconds within 0..``duration`` (0..24 h when it is not known); None
    when absent or not finite."""
    number = _number(value)
    if number is None:
        return None
    top = duration if duration > 0 else MAX_DURATION_MS
    return int(min(max(number, 0), top))


def url(value: object) -> str | None:
    """An absolute ``https``/``http`` URL of at most :data:`MAX_URL` characters, else None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise OutOfBounds(f"URL expected, got {type(value).__name__}")
    if len(value) > MAX_URL:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme in URL_SCHEMES and parts.hostname else None


def identifier(value: object) -> str | None:
    """An id or URI of at most :data:`MAX_ID` characters, else None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise OutOfBounds(f"id expected, got {type(value).__name__}")
    return value if 0 < len(value) <= MAX_ID else None


def retry_after(
    value: str | None,
    *,
    now: float | None = None,
    date: str | None = None,
    default: float = 1.0,
) -> float:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds, or an HTTP-date counted
    from the answer's ``Date`` (else ``now``, seconds since the epoch, if given); within
    0..:data:`MAX_RETRY_AFTER`, ``default`` when absent or unreadable."""
    raw = (value or "").strip()
    if not raw:
        return default
    if raw.isascii() and raw.isdigit():
        seconds = float(int(raw[:12]))  # a 300-digit delta is "very long", not a ValueError
    elif (number := _decimal(raw)) is not None:  # not HTTP, but seen: "0.5"
        seconds = number
    else:
        when = _epoch(raw)
        if when is None:
            return default
        sent = _epoch(date) if date else now
        if sent is None:  # a date, and nothing to count it from
            return default
        seconds = when - sent
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def _decimal(raw: str) -> float | None:
    try:
        number = float(raw)
    except ValueError:
        return None
    return None if math.isnan(number) else number  # Infinity: the longest wait


def _epoch(http_date: str) -> float | None:
    """An HTTP-date (IMF-fixdate or an obsolete form) as seconds since the epoch, or None."""
    try:
        parsed = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # "-0000": UTC, as HTTP dates are
        return None if parsed.year < 1970 else parsed.replace(tzinfo=UTC).timestamp()
    return parsed.timestamp()
