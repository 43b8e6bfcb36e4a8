"""Reading Spotify's answers: JSON payloads into values (:mod:`nowplaying.models`), error answers
into the error tree (:mod:`.errors`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from nowplaying.models import QUOTA_EXCEEDED, Item, Kind, NowPlaying, PlayedItem, Profile
from nowplaying.sources.spotify.errors import BadResponse, RateLimited, SpotifyUnavailable

MAX_RETRY_AFTER = 86400.0
"""A longer (or non-finite) Retry-After is read as this: a day, then Spotify is asked again."""


def parse_currently_playing(body: Mapping[str, Any], *, now: float) -> NowPlaying:
    """Read a currently-playing (or playback-state) payload; tolerant of missing optional fields."""
    kind_raw = body.get("currently_playing_type") or "unknown"
    try:
        kind = Kind(kind_raw)
    except ValueError:
        kind = Kind.UNKNOWN
    raw_item = body.get("item")
    item = parse_item(raw_item) if isinstance(raw_item, Mapping) else None
    if item is not None:
        kind = item.kind
    progress = body.get("progress_ms")
    return NowPlaying(
        is_playing=bool(body.get("is_playing")),
        kind=kind if (item is not None or kind == Kind.AD) else None,
        item=item,
        progress_ms=_int(progress) if _is_number(progress) else None,
        # Spotify's `timestamp` is when playback last changed state, not when `progress_ms` was
        # measured; progress is as of the answer, so the answer's time is the reference.
        timestamp=now,
    )


def parse_item(raw: Mapping[str, Any]) -> Item:
    """A TrackObject or EpisodeObject as an :class:`Item`."""
    if raw.get("type") == "episode" or "show" in raw:
        show = _mapping(raw.get("show"))
        show_name = str(show.get("name") or "")
        return Item(
            kind=Kind.EPISODE,
            title=str(raw.get("name") or ""),
            artists=(show_name,) if show_name else (),
            album=show_name or None,
            image_url=_widest(raw.get("images")) or _widest(show.get("images")),
            url=spotify_url(raw.get("external_urls")),
            duration_ms=_int(raw.get("duration_ms")),
            id=_opt_str(raw.get("id")),
            uri=_opt_str(raw.get("uri")),
            explicit=bool(raw.get("explicit")),
        )
    album = _mapping(raw.get("album"))
    artists = raw.get("artists")
    names = (
        tuple(str(a["name"]) for a in artists if isinstance(a, Mapping) and a.get("name"))
        if isinstance(artists, list)
        else ()
    )
    return Item(
        kind=Kind.TRACK,
        title=str(raw.get("name") or ""),
        artists=names,
        album=_opt_str(album.get("name")),
        image_url=_widest(album.get("images")),
        url=spotify_url(raw.get("external_urls")),
        duration_ms=_int(raw.get("duration_ms")),
        id=_opt_str(raw.get("id")),
        uri=_opt_str(raw.get("uri")),
        explicit=bool(raw.get("explicit")),
        is_local=bool(raw.get("is_local")),
    )


def parse_profile(body: Mapping[str, Any], response: httpx.Response | None = None) -> Profile:
    """The ``/me`` payload: who granted the token."""
    uid = body.get("id")
    if not isinstance(uid, str) or not uid:
        raise BadResponse("profile without id", response=response)
    return Profile(
        id=uid,
        display_name=str(body.get("display_name") or uid),
        url=spotify_url(body.get("external_urls")),
    )


def parse_recently_played(body: Mapping[str, Any]) -> list[PlayedItem]:
    """Items of a recently-played page, newest first as Spotify sends them."""
    items = body.get("items")
    if not isinstance(items, list):
        raise BadResponse("recently-played without items")
    out = []
    for entry in items:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("track"), Mapping):
            continue
        try:
            played = datetime.fromisoformat(str(entry["played_at"]).replace("Z", "+00:00"))
            at = played.timestamp()
        except (KeyError, ValueError, OverflowError, OSError):
            continue
        out.append(PlayedItem(item=parse_item(entry["track"]), played_at=at))
    return out


def _widest(images: object) -> str | None:
    if not isinstance(images, list):
        return None
    best: tuple[int, str] | None = None
    for img in images:
        if isinstance(img, Mapping) and isinstance(img.get("url"), str):
            width = _int(img.get("width"))
            if best is None or width > best[0]:
                best = (width, img["url"])
    return best[1] if best else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def spotify_url(external_urls: object) -> str | None:
    if isinstance(external_urls, Mapping):
        url = external_urls.get("spotify")
        if isinstance(url, str) and url:
            return url
    return None


def _opt_str(value: object) -> str | None:
    return str(value) if value is not None else None


def _is_number(value: object) -> bool:
    """A JSON number that is an integer or a finite float (Python's json reads NaN, Infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return int(value)


class NotJSON(ValueError):
    """A body that is not JSON at all (or nested beyond what the parser takes)."""


def json_body(response: httpx.Response) -> object:
    try:
        body: object = response.json()
    except (ValueError, RecursionError) as e:
        raise NotJSON(str(e)) from e
    return body


def json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json_body(response)
    except NotJSON as e:
        raise BadResponse(f"not JSON (status {response.status_code})", response=response) from e
    if not isinstance(body, dict):
        raise BadResponse("JSON is not an object", response=response)
    return body


def error_object(response: httpx.Response) -> dict[str, Any] | None:
    """The Web API's ``{"error": {...}}`` object, when the body is one."""
    try:
        body = json_body(response)
    except NotJSON:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error: dict[str, Any] = body["error"]
        return error
    return None


def api_message(response: httpx.Response) -> str:
    """Spotify's error message: JSON ``error.message``, or the plain-text body (dev-mode 403s)."""
    try:
        body = json_body(response)
    except NotJSON:
        return response.text.strip()[:200] or f"HTTP {response.status_code}"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message") or f"HTTP {response.status_code}")
    return f"HTTP {response.status_code}"


def raise_for_common(response: httpx.Response) -> None:
    status = response.status_code
    if status == 429:
        error = error_object(response)
        reason = error.get("reason") if error is not None else None
        raise RateLimited(
            retry_after(response),
            reason if isinstance(reason, str) and reason else None,
            response=response,
        )
    if status >= 500:
        raise SpotifyUnavailable(f"Spotify answered {status}", response=response)


def retry_after(response: httpx.Response) -> float:
    """Retry-After in seconds: 1 when missing or unreadable, at most :data:`MAX_RETRY_AFTER`."""
    raw = response.headers.get("Retry-After", "")
    try:
        seconds = float(raw)
    except ValueError:
        return 1.0
    if math.isnan(seconds):
        return 1.0
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def quota_refusal(response: httpx.Response) -> bool:
    """Whether a 429 is the development-mode quota (``QUOTA_EXCEEDED``)."""
    error = error_object(response)
    return error is not None and error.get("reason") == QUOTA_EXCEEDED
