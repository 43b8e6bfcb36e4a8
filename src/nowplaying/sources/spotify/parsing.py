"""Reading Spotify's answers: payloads into values, error answers into the error tree.

Every field is read through :mod:`nowplaying.sources.bounds`; one that no bound can make sane is
a ``BadResponse``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import httpx

from nowplaying.models import QUOTA_EXCEEDED, Item, Kind, NowPlaying, PlayedItem, Profile
from nowplaying.sources import bounds
from nowplaying.sources.spotify.errors import BadResponse, RateLimited, SpotifyUnavailable

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _bounded(parse: Callable[_P, _R]) -> Callable[_P, _R]:
    """``parse``, a field out of every bound raised as :class:`BadResponse`."""

    @functools.wraps(parse)
    def parse_bounded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return parse(*args, **kwargs)
        except bounds.OutOfBounds as e:
            raise BadResponse(f"{parse.__name__.removeprefix('parse_')}: {e}") from e

    return parse_bounded


@_bounded
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
    duration = item.duration_ms if item is not None else 0
    return NowPlaying(
        is_playing=bool(body.get("is_playing")),
        kind=kind if (item is not None or kind == Kind.AD) else None,
        item=item,
        progress_ms=bounds.progress_ms(body.get("progress_ms"), duration),
        # Spotify's `timestamp` is when playback last changed state, not when `progress_ms` was
        # measured; progress is as of the answer, so the answer's time is the reference.
        timestamp=now,
    )


def parse_item(raw: Mapping[str, Any]) -> Item:
    """A TrackObject or EpisodeObject as an :class:`Item`, every field bounded."""
    if raw.get("type") == "episode" or "show" in raw:
        show = _mapping(raw.get("show"))
        show_name = bounds.text(show.get("name"))
        return Item(
            kind=Kind.EPISODE,
            title=bounds.text(raw.get("name")),
            artists=(show_name,) if show_name else (),
            album=show_name or None,
            image_url=_widest(raw.get("images")) or _widest(show.get("images")),
            url=spotify_url(raw.get("external_urls")),
            duration_ms=bounds.duration_ms(raw.get("duration_ms")),
            id=bounds.identifier(raw.get("id")),
            uri=bounds.identifier(raw.get("uri")),
            explicit=bool(raw.get("explicit")),
        )
    album = _mapping(raw.get("album"))
    artists = raw.get("artists")
    names = (
        bounds.names(a.get("name") for a in artists if isinstance(a, Mapping))
        if isinstance(artists, list)
        else ()
    )
    return Item(
        kind=Kind.TRACK,
        title=bounds.text(raw.get("name")),
        artists=names,
        album=bounds.optional_text(album.get("name")),
        image_url=_widest(album.get("images")),
        url=spotify_url(raw.get("external_urls")),
        duration_ms=bounds.duration_ms(raw.get("duration_ms")),
        id=bounds.identifier(raw.get("id")),
        uri=bounds.identifier(raw.get("uri")),
        explicit=bool(raw.get("explicit")),
        is_local=bool(raw.get("is_local")),
    )


@_bounded
def parse_profile(body: Mapping[str, Any], response: httpx.Response | None = None) -> Profile:
    """The ``/me`` payload: who granted the token."""
    uid = body.get("id")
    if not isinstance(uid, str) or not uid:
        raise BadResponse("profile without id", response=response)
    if bounds.identifier(uid) is None:
        raise BadResponse("profile id too long", response=response)
    return Profile(
        id=uid,
        display_name=bounds.text(body.get("display_name")) or uid,
        url=spotify_url(body.get("external_urls")),
    )


@_bounded
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
        if isinstance(img, Mapping) and (url := bounds.url(img.get("url"))) is not None:
            width = _int(img.get("width"))
            if best is None or width > best[0]:
                best = (width, url)
    return best[1] if best else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def spotify_url(external_urls: object) -> str | None:
    """``external_urls.spotify``, when it is an http(s) URL within bounds."""
    if isinstance(external_urls, Mapping):
        return bounds.url(external_urls.get("spotify"))
    return None


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
    """Retry-After in seconds (delta-seconds, or an HTTP-date against the answer's ``Date``):
    1 when missing or unreadable, at most :data:`~nowplaying.sources.bounds.MAX_RETRY_AFTER`."""
    headers = response.headers
    return bounds.retry_after(headers.get("Retry-After"), date=headers.get("Date"))


def quota_refusal(response: httpx.Response) -> bool:
    """Whether a 429 is the development-mode quota (``QUOTA_EXCEEDED``)."""
    error = error_object(response)
    return error is not None and error.get("reason") == QUOTA_EXCEEDED
