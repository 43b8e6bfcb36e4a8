"""Spotify's JSON objects, built from the simulator's state.

Shapes follow the recorded payloads in ``spotify-fixtures/`` minus the fields Spotify stopped
sending to development-mode apps in February 2026 (popularity, available_markets, preview_url,
linked_from, show.publisher unless the item sets one). ``base`` is the simulator's own base URL;
cover images and ``href`` links point at it, ``external_urls`` at open.spotify.com as real ones do.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from nowplaying.simulator.accounts import User
from nowplaying.simulator.catalog import Item, is_full_object, item_uri, spotify_id
from nowplaying.simulator.covers import cover_path, sizes_for
from nowplaying.simulator.player import PlayerState

JSON = dict[str, Any]
OPEN = "https://open.spotify.com"
PLAYLIST_ID = spotify_id("playlist:simulated-radio")


def iso_ms(epoch_ms: int) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``, like ``played_at``."""
    moment = datetime.fromtimestamp(epoch_ms // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{epoch_ms % 1000:03d}Z"


def images(base: str, name: str | None, size: list[int] | tuple[int, int] | None) -> list[JSON]:
    """An ``images[]`` array for cover ``name``, widest first (empty without a cover)."""
    if name is None or size is None:
        return []
    width, height = size
    return [
        {"url": base + cover_path(name, w, h), "height": h, "width": w}
        for w, h in sizes_for(width, height)
    ]


def _link(base: str, kind: str, spotify_id_: str) -> JSON:
    return {
        "external_urls": {"spotify": f"{OPEN}/{kind}/{spotify_id_}"},
        "href": f"{base}/v1/{kind}s/{spotify_id_}",
        "id": spotify_id_,
        "type": kind,
        "uri": f"spotify:{kind}:{spotify_id_}",
    }


def render_item(item: Item, base: str) -> JSON:
    """The TrackObject or EpisodeObject for a playlist item."""
    if is_full_object(item):
        return dict(item)
    if item["type"] == "episode":
        return _episode(item, base)
    if item.get("is_local"):
        return _local_track(item)
    return _track(item, base)


def _track(item: Item, base: str) -> JSON:
    artists = [
        {**_link(base, "artist", spotify_id(f"artist:{name}")), "name": name}
        for name in item["artists"]
    ]
    album_id = spotify_id(f"album:{item['album']}")
    album = {
        **_link(base, "album", album_id),
        "album_type": "album",
        "artists": artists[:1],
        "images": images(base, item.get("cover"), item.get("cover_size")),
        "name": item["album"],
        "release_date": "2024-05-17",
        "release_date_precision": "day",
        "total_tracks": 12,
    }
    return {
        **_link(base, "track", item["id"]),
        "album": album,
        "artists": artists,
        "disc_number": 1,
        "duration_ms": item["duration_ms"],
        "explicit": item.get("explicit", False),
        "external_ids": {"isrc": "XX" + item["id"][:10].upper()},
        "is_local": False,
        "is_playable": True,
        "name": item["name"],
        "track_number": 1,
    }


def _local_track(item: Item) -> JSON:
    return {
        "album": {
            "album_type": None,
            "artists": [],
            "external_urls": {},
            "href": None,
            "id": None,
            "images": [],
            "name": item["album"],
            "release_date": None,
            "release_date_precision": None,
            "type": "album",
            "uri": None,
        },
        "artists": [
            {
                "external_urls": {},
                "href": None,
                "id": None,
                "name": name,
                "type": "artist",
                "uri": None,
            }
            for name in item["artists"]
        ],
        "disc_number": 0,
        "duration_ms": item["duration_ms"],
        "explicit": False,
        "external_ids": {},
        "external_urls": {},
        "href": None,
        "id": None,
        "is_local": True,
        "name": item["name"],
        "track_number": 0,
        "type": "track",
        "uri": item_uri(item),
    }


def _episode(item: Item, base: str) -> JSON:
    show: JSON = {
        **_link(base, "show", item["show_id"]),
        "copyrights": [],
        "description": f"{item['show']}: a simulated podcast.",
        "explicit": False,
        "images": images(base, f"show-{item['show_id'][:10].lower()}", (640, 640)),
        "is_externally_hosted": False,
        "languages": ["en-US"],
        "media_type": "audio",
        "name": item["show"],
        "total_episodes": 42,
    }
    if item.get("publisher") is not None:
        show["publisher"] = item["publisher"]
    return {
        **_link(base, "episode", item["id"]),
        "description": item.get("description", ""),
        "duration_ms": item["duration_ms"],
        "explicit": item.get("explicit", False),
        "images": images(base, item.get("cover"), item.get("cover_size")),
        "is_externally_hosted": False,
        "is_playable": True,
        "language": "en-US",
        "languages": ["en-US"],
        "name": item["name"],
        "release_date": "2026-01-15",
        "release_date_precision": "day",
        "show": show,
    }


def context_link(base: str, kind: str = "playlist", context_id: str = PLAYLIST_ID) -> JSON:
    """A ``context`` object (the simulated playlist unless told otherwise)."""
    return {k: v for k, v in _link(base, kind, context_id).items() if k != "id"}


def _context(state: PlayerState, base: str) -> JSON | None:
    if state.kind == "track":
        return context_link(base)
    if state.kind == "episode" and state.item is not None and not is_full_object(state.item):
        return context_link(base, "show", state.item["show_id"])
    return None


def _actions(state: PlayerState) -> JSON:
    if state.kind == "ad":
        disallows = {"pausing": True, "seeking": True, "skipping_next": True, "skipping_prev": True}
    elif state.is_playing:
        disallows = {"resuming": True}
    else:
        disallows = {"pausing": True}
    return {"disallows": disallows}


def currently_playing(state: PlayerState, base: str, *, episodes: bool) -> JSON:
    """The currently-playing body; ``episodes``: the caller sent ``additional_types=episode``."""
    item = None
    if state.item is not None and (state.kind == "track" or episodes):
        item = render_item(state.item, base)
    return {
        "timestamp": state.changed_at_ms,
        "context": _context(state, base),
        "progress_ms": state.progress_ms,
        "is_playing": state.is_playing,
        "item": item,
        "currently_playing_type": state.kind or "unknown",
        "actions": _actions(state),
    }


def playback_state(state: PlayerState, base: str, *, episodes: bool) -> JSON:
    """The ``GET /me/player`` body: currently-playing plus device, repeat and shuffle."""
    return {
        **currently_playing(state, base, episodes=episodes),
        "device": {
            "id": spotify_id("device:kitchen"),
            "is_active": True,
            "is_private_session": state.private_session,
            "is_restricted": False,
            "name": "Kitchen Speaker (simulated)",
            "supports_volume": True,
            "type": "Speaker",
            "volume_percent": 64,
        },
        "repeat_state": "context",
        "shuffle_state": False,
        "smart_shuffle": False,
    }


def user_object(user: User, base: str, scopes: tuple[str, ...]) -> JSON:
    """The ``GET /me`` body; private fields only with the scopes that unlock them."""
    avatar = "avatar-" + hashlib.sha256(user.user_id.encode()).hexdigest()[:12]
    body: JSON = {
        "display_name": user.display_name,
        "external_urls": {"spotify": f"{OPEN}/user/{quote(user.user_id, safe='')}"},
        "followers": {"href": None, "total": 7},
        "href": f"{base}/v1/users/{quote(user.user_id, safe='')}",
        "id": user.user_id,
        "images": images(base, avatar, (300, 300)),
        "type": "user",
        "uri": f"spotify:user:{user.user_id}",
    }
    if "user-read-private" in scopes:
        body["country"] = user.country
        body["product"] = user.product
        body["explicit_content"] = {"filter_enabled": False, "filter_locked": False}
    if "user-read-email" in scopes:
        body["email"] = f"{quote(user.user_id, safe='')}@example.invalid"
    return body
