"""The built-in playlist the simulated players loop through.

The names are hostile to careless renderers on purpose: markup characters, quotes, right-to-left
text, emoji, very long titles, a local file with no id.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import quote_plus

Item = dict[str, Any]

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def spotify_id(seed: str) -> str:
    """A stable 22-character base62 id, shaped like Spotify's, derived from ``seed``."""
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:17], "big")
    chars = []
    for _ in range(22):
        number, rest = divmod(number, 62)
        chars.append(_BASE62[rest])
    return "".join(chars)


def track(
    name: str,
    artists: list[str],
    album: str,
    duration_ms: int,
    *,
    explicit: bool = False,
    cover_size: tuple[int, int] = (640, 640),
) -> Item:
    """A compact track item with a generated cover."""
    item_id = spotify_id(f"track:{name}:{artists[0]}")
    return {
        "type": "track",
        "id": item_id,
        "uri": None,
        "name": name,
        "artists": artists,
        "album": album,
        "duration_ms": duration_ms,
        "explicit": explicit,
        "is_local": False,
        "cover": f"album-{item_id[:10].lower()}",
        "cover_size": list(cover_size),
    }


def local_track(name: str, artist: str, album: str, duration_ms: int) -> Item:
    """A compact local-file track: no id, a ``spotify:local:`` uri, no cover."""
    parts = [quote_plus(part) for part in (artist, album, name)]
    return {
        "type": "track",
        "id": None,
        "uri": f"spotify:local:{':'.join(parts)}:{duration_ms // 1000}",
        "name": name,
        "artists": [artist],
        "album": album,
        "duration_ms": duration_ms,
        "explicit": False,
        "is_local": True,
        "cover": None,
        "cover_size": None,
    }


def episode(
    name: str,
    show: str,
    duration_ms: int,
    *,
    publisher: str | None = None,
    description: str = "",
    cover_size: tuple[int, int] = (640, 360),
) -> Item:
    """A compact podcast episode with a (non-square by default) generated cover."""
    item_id = spotify_id(f"episode:{name}:{show}")
    return {
        "type": "episode",
        "id": item_id,
        "uri": None,
        "name": name,
        "show": show,
        "show_id": spotify_id(f"show:{show}"),
        "publisher": publisher,
        "description": description,
        "duration_ms": duration_ms,
        "explicit": False,
        "cover": f"episode-{item_id[:10].lower()}",
        "cover_size": list(cover_size),
    }


def is_full_object(item: Item) -> bool:
    """Whether ``item`` is a full Spotify object (served verbatim) rather than the compact form."""
    return isinstance(item.get("album"), dict) or isinstance(item.get("show"), dict)


def item_uri(item: Item) -> str:
    """The Spotify URI of a compact or full item."""
    uri = item.get("uri")
    if isinstance(uri, str):
        return uri
    return f"spotify:{item['type']}:{item['id']}"


def default_playlist() -> list[Item]:
    """The looping playlist every new simulated user starts on (a fresh copy each call)."""
    return [
        track("Hoppípolla", ["Sigur Rós"], "Takk…", 268_000),
        track(
            '<Intro> & "Outro"',
            ["The Ampersands & Co.", "Quote 'Unquote'"],
            "<b>Bold</b> Moves",
            127_000,
        ),
        track("夜に駆ける", ["YOASOBI"], "THE BOOK", 261_000),
        track(
            "🌙 Moonlight Drive-Thru 🍟",
            ["Neon Pigeon", "DJ Ünïcödé"],
            "Late Night Snacks",
            192_000,
        ),
        episode(
            "Episode 42: Parsing “Smart Quotes” & <Tags> Safely",
            "The Escaping Hour",
            400_000,
            description="Why every string is user data, and what happens when you forget.",
        ),
        track("لما بدا يتثنى", ["فيروز"], "أندلسيات", 214_000),
        track("Gravel & Grit", ["MC O'Brien"], "Road Dust (Deluxe)", 165_000, explicit=True),
        local_track(
            "Demo #3 (Final) (Really Final)", "Garage Band Tapes", "Basement Sessions", 215_000
        ),
        track(
            "Dancing in the Fridge Light",
            ["Arrival Tribute Band"],
            "Arrival (Not That One)",
            230_400,
            cover_size=(640, 575),
        ),
        track(
            "Ça plane pour moi",
            ["Élodie Fürstenberg", "Ñandú Collective", "Zoë"],
            "Été Électrique",
            181_000,
        ),
        track(
            "A Track With A Name So Long It Will Surely Overflow Any Widget That Does Not "
            'Truncate Properly (Extended 12" Remix)',
            ["The Verbose Orchestra"],
            "Too Many Words, Vol. 2",
            330_000,
        ),
        track(
            "Rhapsody in Blue-ish", ["Gershwin Cover Project", "Piano Ghost"], "Blue Hour", 362_000
        ),
    ]
