"""Last.fm: what a user scrobbles now, and web authentication (``auth.getSession``).

``user.getRecentTracks&limit=1&format=json`` answers the now-playing item first, marked
``"@attr": {"nowplaying": "true"}`` and without ``date`` (so ``limit=1`` can give two items);
numbers arrive as strings, ``mbid`` often as ``""``, a single item maybe as an object rather
than a list; there is no progress and no duration. The blank image
(:data:`PLACEHOLDER`) is no image. The client holds no state: the key and secret are settings,
the user name is handed in. Errors, in the source-neutral tree::

    LastFmError (SourceError)
     ├── Private (Refused)          error 17: the profile hides its recent listening
     ├── UnknownUser (Refused)      error 6
     ├── KeyRefused (Refused)       errors 10, 26: the app's key is invalid or suspended
     │    └── SecretRefused         error 13: the signature (the shared secret) is wrong
     ├── TokenRefused (Refused)     errors 4, 14, 15: a web-auth token not allowed, or stale
     ├── RateLimited                error 29
     └── Unavailable                8, 11, 16, a 5xx, a timeout; BadResponse for junk
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from nowplaying import __version__
from nowplaying.clock import Clock
from nowplaying.models import Item, Kind, NowPlaying, PlayedItem, SourceKind
from nowplaying.sources import bounds
from nowplaying.sources.base import BadResponse, RateLimited, Refused, SourceError, Unavailable

API_URL = "https://ws.audioscrobbler.com/2.0/"
AUTH_URL = "https://www.last.fm/api/auth/"
PLACEHOLDER = "2a96cbd8b46e442fc41c2b86b821562f"
"""Last.fm's blank image, whatever its size: no cover."""
USER_AGENT = f"nowplaying/{__version__} (+https://github.com/nowplaying)"
RATE_LIMIT_WAIT = 60.0
"""How long to hold off after error 29 (Last.fm names no time)."""
UNSIGNED = {"format", "callback", "api_sig"}


class LastFmError(SourceError):
    """Base of Last.fm's errors."""


class Private(Refused, LastFmError):
    kind = "private"
    fix = (
        "This Last.fm profile hides its recent listening. Untick 'Hide recent listening"
        " information' in Last.fm's privacy settings to show it here."
    )


class UnknownUser(Refused, LastFmError):
    kind = "not_found"
    fix = "Last.fm knows no such user; connect Last.fm again."


class KeyRefused(Refused, LastFmError):
    kind = "key_refused"
    fix = "Last.fm refuses this server's API key (invalid or suspended): check LASTFM_API_KEY."


class TokenRefused(Refused, LastFmError):
    kind = "token_refused"
    fix = "Last.fm did not accept the sign-in (not allowed, or too old): connect again."


class SecretRefused(KeyRefused):
    fix = "Last.fm refuses this server's signature: check LASTFM_API_SECRET."


_REFUSALS: dict[int, type[Refused]] = {
    17: Private,
    6: UnknownUser,
    10: KeyRefused,
    26: KeyRefused,
    13: SecretRefused,
    4: TokenRefused,
    14: TokenRefused,
    15: TokenRefused,
}


def signature(params: dict[str, str], secret: str) -> str:
    """``api_sig``: md5 of the parameters' names and values by name (``format`` and
    ``callback`` left out), then the shared secret."""
    text = "".join(f"{k}{params[k]}" for k in sorted(params) if k not in UNSIGNED)
    return hashlib.md5((text + secret).encode()).hexdigest()  # noqa: S324 - Last.fm's scheme


class LastFmClient:
    """Last.fm's web service over an injected ``httpx.AsyncClient``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        clock: Clock,
        *,
        api_key: str,
        api_secret: str,
        api_url: str = API_URL,
    ) -> None:
        self._http = http
        self._clock = clock
        self._key = api_key
        self._secret = api_secret
        self.api_url = api_url

    async def now_playing(self, user: str) -> tuple[NowPlaying, PlayedItem | None]:
        """What ``user`` scrobbles now (not ``active`` when nothing), and the last scrobble."""
        body = await self._call({"method": "user.getrecenttracks", "user": user, "limit": "1"})
        return parse_recent(body, self._clock.now())

    async def session(self, token: str) -> tuple[str, str]:
        """Exchange a web-auth ``token`` (once) for the user's name and session key."""
        params = {"method": "auth.getSession", "api_key": self._key, "token": token}
        body = await self._call({**params, "api_sig": signature(params, self._secret)})
        try:
            session = body["session"]
            return bounds.text(session["name"]), str(session["key"])
        except (KeyError, TypeError, bounds.OutOfBounds) as e:
            raise BadResponse("auth.getSession answered without a session") from e

    async def check_key(self) -> None:
        """Ask for a web-auth token (``auth.getToken``, signed): KeyRefused when Last.fm does not
        take the key (SecretRefused: the secret), nothing stored anywhere."""
        params = {"method": "auth.getToken", "api_key": self._key}
        await self._call({**params, "api_sig": signature(params, self._secret)})

    async def _call(self, params: dict[str, str]) -> dict[str, Any]:
        query = {"api_key": self._key, **params, "format": "json"}
        try:
            response = await self._http.get(
                self.api_url, params=query, headers={"User-Agent": USER_AGENT}
            )
        except httpx.HTTPError as e:
            raise Unavailable(f"Last.fm unreachable ({type(e).__name__})") from e
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError) as e:
            if response.status_code >= 500:
                raise Unavailable(f"Last.fm answered {response.status_code}") from e
            raise BadResponse("Last.fm answered something other than JSON") from e
        if not isinstance(body, dict):
            raise BadResponse("Last.fm answered JSON that is not an object")
        code = body.get("error")
        if code is None and response.status_code < 400:
            return body
        message = str(body.get("message", ""))[:200]
        if code == 29 or response.status_code == 429:
            raise RateLimited(RATE_LIMIT_WAIT, "rate_limit")
        refusal = _REFUSALS.get(code) if isinstance(code, int) else None
        if refusal is not None:
            raise refusal(message or f"error {code}")
        raise Unavailable(f"Last.fm error {code} (HTTP {response.status_code})")


def parse_recent(body: dict[str, Any], now: float) -> tuple[NowPlaying, PlayedItem | None]:
    """A ``user.getRecentTracks`` answer: the now-playing item (if any) and the last scrobble."""
    try:
        tracks = body["recenttracks"].get("track", [])
    except (KeyError, AttributeError) as e:
        raise BadResponse("getRecentTracks without recenttracks") from e
    if isinstance(tracks, dict):  # one item, as an object (the XML-to-JSON conversion)
        tracks = [tracks]
    if not isinstance(tracks, list):
        raise BadResponse("getRecentTracks' track is neither a list nor an object")
    playing = NowPlaying(is_playing=False, timestamp=now, source=SourceKind.LASTFM)
    last: PlayedItem | None = None
    try:
        for track in tracks:
            attr = track.get("@attr") or {}
            if str(attr.get("nowplaying", "")).lower() == "true":
                playing = NowPlaying(True, Kind.TRACK, _item(track), None, now, SourceKind.LASTFM)
            elif last is None and isinstance(track.get("date"), dict):
                last = PlayedItem(_item(track), float(track["date"]["uts"]))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise BadResponse(f"getRecentTracks item unreadable ({type(e).__name__})") from e
    return playing, last


def _item(track: dict[str, Any]) -> Item:
    artist = track.get("artist") or {}
    album = track.get("album") or {}
    name = artist.get("#text") or artist.get("name") if isinstance(artist, dict) else artist
    url = bounds.url(track.get("url"))
    return Item(
        kind=Kind.TRACK,
        title=bounds.text(track["name"]),
        artists=bounds.names([name]),
        album=bounds.optional_text(album.get("#text") if isinstance(album, dict) else album),
        image_url=_image(track.get("image")),
        url=url if url and url.startswith("https://www.last.fm/") else None,
        duration_ms=0,
        id=bounds.identifier(track.get("mbid") or None),
    )


def _image(images: object) -> str | None:
    """The ``extralarge`` image (else the largest given), never the blank placeholder."""
    if not isinstance(images, list):
        return None
    by_size = {i.get("size"): i.get("#text") for i in images if isinstance(i, dict)}
    for size in ("extralarge", "large", "medium", "small"):
        found = bounds.url(by_size.get(size))
        if found and PLACEHOLDER not in found:
            return found
    return None


def auth_url(auth_base: str, api_key: str, callback: str) -> str:
    """Where the owner allows the app: Last.fm sends them back to ``callback?token=...``."""
    return str(httpx.URL(auth_base, params={"api_key": api_key, "cb": callback}))
