"""What players push, read into values: ListenBrainz submissions and Web Scrobbler's webhook.

Limits are ListenBrainz's (a listen at most 10,240 bytes, an ``import`` at most 1,000 listens)
and every field is held to :mod:`nowplaying.sources.bounds`. A pushed URL is never kept
(``/p/{id}/open`` must not lead where a push says); pushed art (Web Scrobbler's ``trackArt``) is
kept only where the caller's allow-list says (the cover fetcher's), and a ListenBrainz listen's
``release_mbid`` gives the Cover Art Archive's cover. Anything else is :class:`Rejected`, with
the message the player is shown.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from nowplaying.models import Item, Kind, NowPlaying, SourceKind
from nowplaying.sources import bounds, coverart

MAX_LISTEN_BYTES = 10_240
MAX_IMPORT = 1000
MAX_BODY_BYTES = MAX_IMPORT * MAX_LISTEN_BYTES
PLAYING_NOW_MAX = 600.0
"""How long a playing-now without a duration lasts (ListenBrainz's 10 minutes)."""


class Rejected(ValueError):
    """A push that cannot be read; its message is the answer's ``error``."""


class Event(StrEnum):
    """What a push says happened."""

    PLAYING = "playing"
    PAUSED = "paused"
    LISTENED = "listened"
    """A finished listen: the last played, and the end of the matching playing-now."""


@dataclass(frozen=True, slots=True)
class Push:
    """One pushed fact: what plays (or was paused, or was listened to) and until when."""

    event: Event
    playing: NowPlaying
    expires_at: float
    """When a playing-now stops counting without news (its duration, else 10 minutes)."""


def listenbrainz(body: bytes, now: float, coverart_url: str = coverart.ARCHIVE_URL) -> list[Push]:
    """A ``/1/submit-listens`` body: ``playing_now`` and ``single`` carry one listen, ``import``
    up to 1,000; ``playing_now`` plays from ``now``, the others were listened to. A listen's
    cover is ``release_mbid``'s at the Cover Art Archive ``coverart_url``."""
    if len(body) > MAX_BODY_BYTES:
        raise Rejected("Payload too large.")
    data = _json(body)
    kind, payload = data.get("listen_type"), data.get("payload")
    if kind not in {"playing_now", "single", "import"}:
        raise Rejected("JSON document requires a valid listen_type key.")
    if not isinstance(payload, list) or not payload:
        raise Rejected("JSON document does not contain any listens in payload.")
    if kind != "import" and len(payload) != 1:
        raise Rejected(f"JSON document contains more than one listen for {kind}.")
    if len(payload) > MAX_IMPORT:
        raise Rejected(f"Too many listens: at most {MAX_IMPORT} in one import.")
    return [_listen(listen, kind == "playing_now", now, coverart_url) for listen in payload]


def _listen(listen: object, playing: bool, now: float, coverart_url: str) -> Push:
    if not isinstance(listen, dict):
        raise Rejected("Each listen must be a JSON object.")
    if len(json.dumps(listen).encode()) > MAX_LISTEN_BYTES:
        raise Rejected(f"JSON document is too large: a listen is at most {MAX_LISTEN_BYTES} bytes.")
    meta = listen.get("track_metadata")
    if not isinstance(meta, dict):
        raise Rejected("JSON document does not contain track_metadata.")
    for key in ("artist_name", "track_name"):
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            raise Rejected(f"JSON document does not contain required {key}.")
    info = meta.get("additional_info")
    info = {} if info is None else info
    if not isinstance(info, dict):
        raise Rejected("additional_info must be a JSON object.")
    duration = _duration_ms(info)
    item = _item(meta["track_name"], meta["artist_name"], meta.get("release_name"), duration)
    item = replace(item, image_url=coverart.front(coverart_url, info.get("release_mbid")))
    if playing:
        return pushed(_now_playing(item, True, None, now))
    at = listen.get("listened_at")
    if isinstance(at, bool) or not isinstance(at, int) or at <= 0:
        raise Rejected("JSON document must contain the key listened_at (epoch seconds).")
    return Push(Event.LISTENED, _now_playing(item, False, None, float(at)), float(at))


def _duration_ms(info: Mapping[str, Any]) -> int:
    try:
        if info.get("duration_ms") is not None:
            return bounds.duration_ms(info["duration_ms"])
        seconds = bounds.duration_ms(info.get("duration"))
    except bounds.OutOfBounds as e:
        raise Rejected(f"additional_info: {e}.") from e
    return seconds * 1000 if seconds else 0


def _no_art(url: str) -> bool:
    return False


WEB_SCROBBLER_EVENTS = {
    "nowplaying": Event.PLAYING,
    "resumedplaying": Event.PLAYING,
    "paused": Event.PAUSED,
    "scrobble": Event.LISTENED,
}


def web_scrobbler(body: bytes, now: float, art: Callable[[str], bool] = _no_art) -> Push | None:
    """A Web Scrobbler webhook event; None for the ones that say nothing of what plays
    (``loved``). ``processed`` (the corrected names) is preferred to ``parsed``; ``currentTime``
    and ``duration`` (seconds) give progress when present; ``trackArt`` is the cover if ``art``
    allows its URL."""
    if len(body) > MAX_LISTEN_BYTES:
        raise Rejected("Payload too large.")
    data = _json(body)
    name = data.get("eventName")
    if not isinstance(name, str):
        raise Rejected("eventName is required.")
    event = WEB_SCROBBLER_EVENTS.get(name)
    if event is None:
        return None
    song = (data.get("data") or {}).get("song") if isinstance(data.get("data"), dict) else None
    if not isinstance(song, dict):
        raise Rejected("data.song is required.")
    parsed, processed = song.get("parsed") or {}, song.get("processed") or {}
    if not isinstance(parsed, dict) or not isinstance(processed, dict):
        raise Rejected("data.song.parsed and data.song.processed must be objects.")
    merged = {**parsed, **{k: v for k, v in processed.items() if v not in (None, "")}}
    track, artist = merged.get("track"), merged.get("artist")
    if not isinstance(track, str) or not track.strip():
        raise Rejected("The song has no track name.")
    if not isinstance(artist, str) or not artist.strip():
        raise Rejected("The song has no artist.")
    try:
        duration = bounds.duration_ms(_seconds(merged.get("duration")))
        progress = bounds.progress_ms(_seconds(merged.get("currentTime")), duration)
    except bounds.OutOfBounds as e:
        raise Rejected(f"data.song: {e}.") from e
    item = _item(track, artist, merged.get("album"), duration)
    image = bounds.url(merged.get("trackArt")) if isinstance(merged.get("trackArt"), str) else None
    if image is not None and art(image):
        item = replace(item, image_url=image)
    return pushed(_now_playing(item, event is Event.PLAYING, progress, now), event)


def _seconds(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value * 1000
    return value


def _item(title: str, artist: str, album: object, duration_ms: int) -> Item:
    try:
        return Item(
            kind=Kind.TRACK,
            title=bounds.text(title.strip()),
            artists=bounds.names([artist.strip()]),
            album=bounds.optional_text(album),
            image_url=None,
            url=None,
            duration_ms=duration_ms,
        )
    except bounds.OutOfBounds as e:
        raise Rejected(f"track_metadata: {e}.") from e


def _now_playing(item: Item, playing: bool, progress: int | None, at: float) -> NowPlaying:
    return NowPlaying(
        is_playing=playing,
        kind=Kind.TRACK,
        item=item,
        progress_ms=progress,
        timestamp=at,
        source=SourceKind.PUSH,
    )


def pushed(playing: NowPlaying, event: Event | None = None) -> Push:
    """The push that says ``playing`` (pushed at its ``timestamp``): in force for what is left
    of the track, or :data:`PLAYING_NOW_MAX` when its length is unknown. Also how an instance
    takes on a push another instance received (the wire carries the state, not the push)."""
    duration = playing.item.duration_ms if playing.item else 0
    left = duration - (playing.progress_ms or 0) if duration else 0
    if event is None:
        event = Event.PLAYING if playing.is_playing else Event.PAUSED
    return Push(event, playing, playing.timestamp + (left / 1000 if left > 0 else PLAYING_NOW_MAX))


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise Rejected("Cannot parse JSON document.") from e
    if not isinstance(data, dict):
        raise Rejected("The JSON document must be an object.")
    return data
