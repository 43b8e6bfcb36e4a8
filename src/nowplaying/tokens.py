"""Access tokens: cached until shortly before expiry, refreshed once at a time per account.

Rules from Spotify's contract:
- a refresh that returns a new refresh token is persisted *before* the new access token is used;
  one that returns none keeps the stored one;
- ``invalid_grant`` (revoked, expired after six months) is final: the account is marked
  "reconnect required" and no retry is made;
- a 401 from the Web API triggers exactly one refresh and one retry.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .clock import Clock
from .coord import Coordinator, LocalCoordinator
from .models import Token
from .spotify import AccessTokenRejected, ReconnectRequired, SpotifyClient
from .store import AccountStatus, Store

log = logging.getLogger(__name__)
T = TypeVar("T")


class AccountGone(ReconnectRequired):
    """The account is not in the store (disconnected), or already needs reconnecting."""


class TokenManager:
    """Hands out a valid access token per account; refreshes are single-flight per account."""

    def __init__(
        self,
        client: SpotifyClient,
        store: Store,
        clock: Clock,
        *,
        leeway: float = 60.0,
        coord: Coordinator | None = None,
    ) -> None:
        self._client = client
        self._store = store
        self._clock = clock
        self._leeway = leeway
        self._coord: Coordinator = coord or LocalCoordinator()
        self._cache: dict[str, Token] = {}
        self.counts: Counter[str] = Counter()
        """``refresh`` (token calls made), ``rotated`` (new refresh tokens stored)."""

    def seed(self, account_id: str, token: Token) -> None:
        """Cache a token obtained elsewhere (the code exchange at login)."""
        self._cache[account_id] = token

    def forget(self, account_id: str) -> None:
        """Drop the cached access token here (logout, disconnect; see also :meth:`drop`)."""
        self._cache.pop(account_id, None)

    async def drop(self, account_id: str) -> None:
        """Forget the access token here and on every instance."""
        self.forget(account_id)
        await self._coord.drop_token(account_id)

    async def token(self, account_id: str, *, stale: Token | None = None) -> Token:
        """A valid access token. ``stale`` is one the API just refused: replace it."""
        token = self._cache.get(account_id)
        if token is not None and not _same(token, stale) and not self._expired(token):
            return token
        # One refresh at a time per account, across tasks and (with Redis) across instances.
        async with self._coord.lock(f"refresh:{account_id}"):
            token = self._cache.get(account_id)  # another task may have refreshed meanwhile
            if token is not None and not _same(token, stale) and not self._expired(token):
                return token
            shared = _token_from_wire(await self._coord.get_token(account_id))
            if shared is not None and not self._expired(shared) and not _same(shared, stale):
                self._cache[account_id] = shared
                return shared
            return await self._refresh(account_id)

    async def call(self, account_id: str, fn: Callable[[str], Awaitable[T]]) -> T:
        """Run ``fn(access_token)``; on a 401, refresh once and run it once more."""
        token = await self.token(account_id)
        try:
            return await fn(token.access_token)
        except AccessTokenRejected:
            log.info("access token refused; refreshing once and retrying")
            fresh = await self.token(account_id, stale=token)
            return await fn(fresh.access_token)

    def _expired(self, token: Token) -> bool:
        return token.is_expired(self._clock.now(), self._leeway)

    async def _refresh(self, account_id: str) -> Token:
        account = await self._store.get_account(account_id)
        if account is None or account.status is AccountStatus.RECONNECT_REQUIRED:
            self.forget(account_id)
            raise AccountGone("account is not connected")
        self.counts["refresh"] += 1
        try:
            token = await self._client.refresh(account.refresh_token)
        except ReconnectRequired as e:
            self.forget(account_id)
            await self._store.set_status(account_id, AccountStatus.RECONNECT_REQUIRED)
            log.warning("an account's grant is gone (%s): marked reconnect required", e)
            raise
        if token.refresh_token and token.refresh_token != account.refresh_token:
            # Persist the rotated refresh token before the new access token is used.
            await self._store.set_refresh_token(account_id, token.refresh_token)
            self.counts["rotated"] += 1
        self._cache[account_id] = token
        ttl = token.expires_at - self._clock.now() - self._leeway
        await self._coord.put_token(account_id, _token_to_wire(token), ttl)
        return token


def _same(a: Token, b: Token | None) -> bool:
    return b is not None and secrets.compare_digest(a.access_token, b.access_token)


def _token_to_wire(token: Token) -> str:
    """The access token for other instances (never the refresh token)."""
    return json.dumps(
        {"a": token.access_token, "e": token.expires_at, "s": sorted(token.scope)},
        separators=(",", ":"),
    )


def _token_from_wire(payload: str | None) -> Token | None:
    if payload is None:
        return None
    try:
        data = json.loads(payload)
        return Token(str(data["a"]), float(data["e"]), frozenset(data["s"]))
    except (ValueError, KeyError, TypeError):
        return None
