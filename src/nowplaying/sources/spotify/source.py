"""Spotify as a :class:`~nowplaying.sources.base.Source`: the client's reads, tokens handled."""

from __future__ import annotations

from nowplaying.models import NowPlaying, PlayedItem
from nowplaying.sources.spotify.client import SpotifyClient
from nowplaying.sources.spotify.grants import TokenManager
from nowplaying.sources.spotify.oauth import SCOPE_RECENTLY_PLAYED


class SpotifySource:
    """What an account plays on Spotify, read with its access token (refreshed as needed)."""

    def __init__(self, tokens: TokenManager, client: SpotifyClient) -> None:
        self._tokens = tokens
        self._client = client

    async def now_playing(self, account_id: str) -> NowPlaying:
        return await self._tokens.call(account_id, self._client.currently_playing)

    async def recently_played(self, account_id: str, limit: int) -> list[PlayedItem]:
        async def read(token: str) -> list[PlayedItem]:
            return await self._client.recently_played(token, limit=limit)

        return await self._tokens.call(account_id, read)

    def tells_history(self, scopes: frozenset[str]) -> bool:
        return SCOPE_RECENTLY_PLAYED in scopes
