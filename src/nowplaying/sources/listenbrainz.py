"""ListenBrainz: whose a user token is (``/1/validate-token``) and what a user plays now
(``/1/user/{user}/playing-now``: at most one listen, no timestamp, no position).

Every request names nowplaying in its User-Agent, as ListenBrainz asks. Each answer's rate-limit
headers come back as an :class:`Allowance`, so the caller can keep within them; a 429 is
:class:`~nowplaying.sources.base.RateLimited` for ``X-RateLimit-Reset-In`` seconds. The client
holds no state. Errors: ``UnknownUser`` (a 404, :class:`~nowplaying.sources.base.Refused`),
``RateLimited``, ``Unavailable`` (5xx, timeouts) and ``BadResponse``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from nowplaying.clock import Clock
from nowplaying.models import Item, Kind, NowPlaying, SourceKind
from nowplaying.sources import bounds, coverart
from nowplaying.sources.base import BadResponse, RateLimited, Refused, Unavailable
from nowplaying.sources.lastfm import USER_AGENT

API_URL = "https://api.listenbrainz.org"
DEFAULT_WAIT = 10.0
"""How long to hold off after a 429 that says nothing of when to come back."""


class UnknownUser(Refused):
    kind = "not_found"
    fix = "ListenBrainz knows no such user; connect ListenBrainz again."


@dataclass(frozen=True, slots=True)
class Allowance:
    """What the rate-limit headers allow: ``remaining`` calls in the next ``reset_in`` s."""

    remaining: int | None
    reset_in: float | None


class ListenBrainzClient:
    """ListenBrainz's API over an injected ``httpx.AsyncClient``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        clock: Clock,
        *,
        api_url: str = API_URL,
        coverart_url: str = coverart.ARCHIVE_URL,
    ) -> None:
        self._http = http
        self._clock = clock
        self.api_url = api_url.rstrip("/")
        self.coverart_url = coverart_url

    async def validate_token(self, token: str) -> str | None:
        """The user name a token belongs to; None for a token ListenBrainz does not know."""
        body, _ = await self._get("/1/validate-token", token=token)
        if body.get("valid") is not True:
            return None
        try:
            return bounds.text(body["user_name"]) or None
        except (KeyError, bounds.OutOfBounds) as e:
            raise BadResponse("validate-token answered valid without a user name") from e

    async def playing_now(
        self, user: str, token: str | None = None
    ) -> tuple[NowPlaying, Allowance]:
        """What ``user`` plays now (not ``active`` when nothing), and the allowance left."""
        body, allowance = await self._get(f"/1/user/{quote(user, safe='')}/playing-now", token)
        return parse_playing_now(body, self._clock.now(), self.coverart_url), allowance

    async def _get(self, path: str, token: str | None) -> tuple[dict[str, Any], Allowance]:
        headers = {"User-Agent": USER_AGENT}
        if token:
            headers["Authorization"] = f"Token {token}"
        try:
            response = await self._http.get(self.api_url + path, headers=headers)
        except httpx.HTTPError as e:
            raise Unavailable(f"ListenBrainz unreachable ({type(e).__name__})") from e
        remaining = _number(response.headers.get("X-RateLimit-Remaining"))
        allowance = Allowance(
            int(remaining) if remaining is not None else None,
            _number(response.headers.get("X-RateLimit-Reset-In")),
        )
        if response.status_code == 429:
            raise RateLimited(allowance.reset_in or DEFAULT_WAIT, "rate_limit")
        if response.status_code == 404:
            raise UnknownUser(path)
        if response.status_code >= 500:
            raise Unavailable(f"ListenBrainz answered {response.status_code}")
        try:
            body = response.json()
        except ValueError as e:
            raise BadResponse("ListenBrainz answered something other than JSON") from e
        if response.status_code >= 400 or not isinstance(body, dict):
            raise BadResponse(f"ListenBrainz answered {response.status_code}")
        return body, allowance


def _number(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def parse_playing_now(
    body: dict[str, Any], now: float, coverart_url: str = coverart.ARCHIVE_URL
) -> NowPlaying:
    """A playing-now answer: the one listen's ``track_metadata``, or nothing playing; the
    cover is the Cover Art Archive's for ``additional_info.release_mbid``."""
    try:
        listens = body["payload"]["listens"]
        if not listens:
            return NowPlaying(is_playing=False, timestamp=now, source=SourceKind.LISTENBRAINZ)
        meta = listens[0]["track_metadata"]
        info = meta.get("additional_info") or {}
        duration = info.get("duration_ms")
        if duration is None and info.get("duration") is not None:
            duration = info["duration"] * 1000
        mbid = coverart.mbid(info.get("recording_mbid"))
        item = Item(
            kind=Kind.TRACK,
            title=bounds.text(meta["track_name"]),
            artists=bounds.names([meta["artist_name"]]),
            album=bounds.optional_text(meta.get("release_name")),
            image_url=coverart.front(coverart_url, info.get("release_mbid")),
            url=f"https://musicbrainz.org/recording/{mbid}" if mbid else None,
            duration_ms=bounds.duration_ms(duration),
            id=mbid,
        )
    except (KeyError, IndexError, TypeError, AttributeError, bounds.OutOfBounds) as e:
        raise BadResponse(f"playing-now unreadable ({type(e).__name__})") from e
    return NowPlaying(True, Kind.TRACK, item, None, now, SourceKind.LISTENBRAINZ)
