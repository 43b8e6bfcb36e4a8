"""Spotify as a :class:`~nowplaying.sources.base.Source`: tokens handled, three 429s told apart."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nowplaying.models import NowPlaying, PlayedItem
from nowplaying.sources.spotify.client import SpotifyClient
from nowplaying.sources.spotify.errors import EndpointRemoved, RateLimited
from nowplaying.sources.spotify.grants import TokenManager
from nowplaying.sources.spotify.oauth import SCOPE_RECENTLY_PLAYED

log = logging.getLogger(__name__)
T = TypeVar("T")

PLAYING = "currently-playing"
HISTORY = "recently-played"


class Removals:
    """Spotify's three 429s, told apart per endpoint. One with a ``reason`` (the quota) or on
    an endpoint that has answered before is a limit (the window, the quota: the app pauses). An
    endpoint removed for development-mode apps answers *every* call with a 429 without reason,
    the first too; the window cannot be told from it by one answer, so the first such 429 pauses
    as the window's would, and a second, with another endpoint answered in between (the window
    had room), disables the endpoint for the app (:class:`EndpointRemoved`), instead of pausing
    everything again and again."""

    def __init__(self) -> None:
        self.removed: set[str] = set()
        self._answered: set[str] = set()
        self._answers = 0
        self._suspect: dict[str, int] = {}
        """Endpoint -> answers counted at its first unexplained 429."""

    def check(self, endpoint: str) -> None:
        """Raise :class:`EndpointRemoved` for an endpoint found removed (no call is made)."""
        if endpoint in self.removed:
            raise EndpointRemoved(endpoint)

    def answered(self, endpoint: str) -> None:
        self._answered.add(endpoint)
        self._answers += 1
        self._suspect.pop(endpoint, None)

    def removal(self, endpoint: str, error: RateLimited) -> bool:
        """Whether ``error`` (a 429 on ``endpoint``) says the endpoint is removed."""
        if error.reason is not None or endpoint in self._answered:
            return False
        first = self._suspect.setdefault(endpoint, self._answers)
        if first == self._answers:
            return False  # nothing answered since: it may be the window
        self.removed.add(endpoint)
        log.error(
            "Spotify no longer serves %s to this app (a 429 on every call, none ever answered):"
            " disabled; %s",
            endpoint,
            EndpointRemoved.fix,
        )
        return True


class SpotifySource:
    """What an account plays on Spotify, read with its access token (refreshed as needed)."""

    def __init__(self, tokens: TokenManager, client: SpotifyClient) -> None:
        self._tokens = tokens
        self._client = client
        self.removals = Removals()

    async def now_playing(self, account_id: str) -> NowPlaying:
        return await self._read(PLAYING, account_id, self._client.currently_playing)

    async def recently_played(self, account_id: str, limit: int) -> list[PlayedItem]:
        async def read(token: str) -> list[PlayedItem]:
            return await self._client.recently_played(token, limit=limit)

        return await self._read(HISTORY, account_id, read)

    async def _read(self, endpoint: str, account_id: str, fn: Callable[[str], Awaitable[T]]) -> T:
        self.removals.check(endpoint)
        try:
            result = await self._tokens.call(account_id, fn)
        except RateLimited as e:
            if self.removals.removal(endpoint, e):
                raise EndpointRemoved(endpoint) from e
            raise
        self.removals.answered(endpoint)
        return result

    def tells_history(self, scopes: frozenset[str]) -> bool:
        return SCOPE_RECENTLY_PLAYED in scopes
