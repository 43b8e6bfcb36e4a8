"""Access tokens: cached until shortly before expiry, refreshed once at a time per account.

Spotify may rotate the refresh token, so a rotated one is stored before the new access token is
used, and a refresh is made only while the store can write (else :class:`RefreshDeferred`: a
stale widget, not a lost grant). A rotated token the store failed to take is kept in this
process and sealed in a file beside the store (:mod:`nowplaying.store.kept`), presented next time
and written into the store first at the next start, but never over a newer grant another process
stored.
``invalid_grant`` is final: reconnect required, no retry. A token sealed with a key that is not
configured is never refreshed, so configuring the key again brings the account back. A 401 from
the Web API gets one refresh and one retry. A refresh happens only under the coordinator's lock;
without the lock none is risked.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeGuard, TypeVar

from nowplaying.clock import Clock
from nowplaying.coord.base import CoordinationError, Coordinator, LocalCoordinator
from nowplaying.models import Grant, Token
from nowplaying.sources.spotify.client import SpotifyClient
from nowplaying.sources.spotify.errors import (
    AccessTokenRejected,
    MissingRefreshToken,
    ReconnectRequired,
    SpotifyUnavailable,
)
from nowplaying.store import Account, AccountStatus, Store, StoreError
from nowplaying.store.kept import KeptError, KeptToken, KeptTokens

log = logging.getLogger(__name__)
T = TypeVar("T")


async def exchange_grant(
    client: SpotifyClient, *, code: str, redirect_uri: str, code_verifier: str
) -> Grant:
    """Trade the authorization code, require a refresh token, and read who granted it."""
    token = await client.exchange_code(
        code=code, redirect_uri=redirect_uri, code_verifier=code_verifier
    )
    if not token.refresh_token:
        raise MissingRefreshToken("no refresh token in the code exchange")
    profile = await client.me(token.access_token)
    return Grant(token, profile)


class AccountGone(ReconnectRequired):
    """The account is not in the store (disconnected), or already needs reconnecting."""


class RefreshDeferred(SpotifyUnavailable):
    """A refresh is due but the refresh lock cannot be had now (another instance holds it, or
    Redis is unreachable), or the store cannot write the refresh token it may bring. Transient:
    serve what is known and try again later."""


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
        kept: KeptTokens | None = None,
    ) -> None:
        """``kept``: the file rotated tokens the store refused are kept in, sealed, until it
        takes them (read by :meth:`restore`); without one they live in this process only."""
        self._client = client
        self._store = store
        self._clock = clock
        self._leeway = leeway
        self._coord: Coordinator = coord or LocalCoordinator()
        self._cache: dict[str, Token] = {}
        self._pending: dict[str, KeptToken] = {}
        self._kept = kept
        self._on_file = False
        """Whether the kept file holds tokens (else a write with none to keep is skipped)."""
        """Rotated refresh tokens the store refused, per account: the grant's only valid copy."""
        self.counts: Counter[str] = Counter()
        """``refresh`` (token calls made), ``rotated`` (new refresh tokens stored),
        ``unsaved`` (rotated tokens the store refused at first), ``deferred`` (refreshes put
        off because the lock could not be had)."""

    def seed(self, account_id: str, token: Token) -> None:
        """Cache a token obtained elsewhere (the code exchange at login): a new grant."""
        self._cache[account_id] = token
        self._unkeep(account_id)  # the earlier grant's tokens are superseded

    def forget(self, account_id: str) -> None:
        """Drop the cached access token here (see also :meth:`drop`). A rotated refresh token
        the store has not taken yet is kept: it may be the grant's only valid copy."""
        self._cache.pop(account_id, None)

    async def drop(self, account_id: str) -> None:
        """The grant is replaced or removed (connect, disconnect): forget its access token here
        and on every instance, and any rotated refresh token of it not stored yet."""
        self.forget(account_id)
        self._unkeep(account_id)
        await self._coord.drop_token(account_id)

    async def flush(self) -> None:
        """At shutdown: write every rotated refresh token the store has not taken yet (the
        grant's only valid copy, which a restart would otherwise lose); log how many are left."""
        for account_id in list(self._pending):
            await self._retry_pending(account_id)
        if self._pending and self._kept is not None and self._keep():
            log.warning(
                "%d rotated refresh token(s) could not be stored before shutdown (the store"
                " refuses writes): kept sealed in %s, stored at the next start",
                len(self._pending),
                self._kept.path,
            )
        elif self._pending:
            log.error(
                "%d rotated refresh token(s) could not be stored before shutdown (the store"
                " refuses writes) nor kept beside it: those accounts will need reconnecting",
                len(self._pending),
            )

    async def restore(self) -> int:
        """At start: read the tokens kept beside the store and write them into it first (each
        under its refresh lock, and only over the token it replaces). One the store refuses
        still stays kept, and is presented at the next refresh; how many were found."""
        if self._kept is None:
            return 0
        try:
            found = self._kept.open()
            self._on_file = bool(found)
        except KeptError as e:
            log.error("%s: rotated refresh tokens the store refuses will not survive a restart", e)
            self._kept = None
            return 0
        for account_id, kept in found.items():
            self._pending.setdefault(account_id, kept)
            try:
                async with self._coord.lock(f"refresh:{account_id}"):
                    await self._retry_pending(account_id)
            except CoordinationError:
                pass  # kept: written at the account's next token request, under the lock
        if found:
            log.warning(
                "%d rotated refresh token(s) kept at the last shutdown; %d stored now",
                len(found),
                sum(1 for a in found if a not in self._pending),
            )
        self._keep()
        return len(found)

    def _keep(self) -> bool:
        """Write the tokens the store has not taken to the kept file; whether they are there."""
        if self._kept is None:
            return False
        if not self._pending and not self._on_file:
            return True
        try:
            self._kept.save(self._pending)
        except KeptError as e:
            log.error("%s", e)
            return False
        self._on_file = bool(self._pending)
        return True

    def _unkeep(self, account_id: str) -> None:
        """The account's rotated token is stored, superseded or void: keep it no longer."""
        if self._pending.pop(account_id, None) is not None:
            self._keep()

    async def token(self, account_id: str, *, stale: Token | None = None) -> Token:
        """A valid access token. ``stale`` is one the API just refused: replace it."""
        token = self._cache.get(account_id)
        if self._usable(token, stale) and account_id not in self._pending:
            return token
        # One refresh at a time per account, across tasks and (with Redis) across instances.
        try:
            async with self._coord.lock(f"refresh:{account_id}"):
                await self._retry_pending(account_id)
                token = self._cache.get(account_id)  # another task may have refreshed meanwhile
                if self._usable(token, stale):
                    return token
                shared = _token_from_wire(await self._coord.get_token(account_id))
                if self._usable(shared, stale):
                    self._cache[account_id] = shared
                    return shared
                return await self._refresh(account_id)
        except CoordinationError as e:
            return await self._unlocked(account_id, stale, e)

    async def call(self, account_id: str, fn: Callable[[str], Awaitable[T]]) -> T:
        """Run ``fn(access_token)``; on a 401, refresh once and run it once more."""
        token = await self.token(account_id)
        try:
            return await fn(token.access_token)
        except AccessTokenRejected:
            log.info("access token refused; refreshing once and retrying")
            fresh = await self.token(account_id, stale=token)
            return await fn(fresh.access_token)

    def _usable(self, token: Token | None, stale: Token | None) -> TypeGuard[Token]:
        return (
            token is not None
            and not _same(token, stale)
            and not token.is_expired(self._clock.now(), self._leeway)
        )

    async def _unlocked(
        self, account_id: str, stale: Token | None, error: CoordinationError
    ) -> Token:
        """No lock: what is valid still serves; no refresh is made."""
        token = self._cache.get(account_id)
        if self._usable(token, stale):
            return token  # an unsaved refresh token waits for the next locked call
        shared = _token_from_wire(await self._coord.get_token(account_id))
        if self._usable(shared, stale):
            self._cache[account_id] = shared
            return shared
        self.counts["deferred"] += 1
        log.warning("token refresh put off: %s", error)
        raise RefreshDeferred(f"refresh put off: {error}") from error

    def _pending_for(self, account: Account) -> KeptToken | None:
        """The account's unsaved refresh token, if it is still the one to present."""
        pending = self._pending.get(account.id)
        if pending is None or account.refresh_token == pending.replaces:
            return pending
        # The store holds it already, or a newer grant (a connect made by another process):
        # the store's copy wins, and is never overwritten with this one.
        self._unkeep(account.id)
        if account.refresh_token != pending.token:
            log.info("a newer grant replaced a rotated refresh token not stored yet")
        return None

    async def _retry_pending(self, account_id: str) -> None:
        """Write again a rotated refresh token the store refused before (under the lock)."""
        if account_id not in self._pending:
            return
        try:
            account = await self._store.get_account(account_id)
        except StoreError:
            return  # still failing: kept, tried again at the next token request
        if account is None:
            self._unkeep(account_id)  # disconnected meanwhile
        elif self._pending_for(account) is not None and await self._write_pending(account_id):
            log.info("a rotated refresh token the store refused earlier is stored now")

    async def _write_pending(self, account_id: str) -> bool:
        """Store the account's pending refresh token; whether the store took it."""
        pending = self._pending.get(account_id)
        if pending is None:
            return True
        try:
            await self._store.set_refresh_token(account_id, pending.token)
        except StoreError:
            return False
        if self._pending.get(account_id) is pending:
            self._unkeep(account_id)
        self.counts["rotated"] += 1
        return True

    async def _writable(self, account: Account) -> bool:
        """Whether the store takes a write now (:meth:`Store.ensure_writable`)."""
        try:
            await self._store.ensure_writable(account.id)
        except StoreError:
            return False
        return True

    async def _refresh(self, account_id: str) -> Token:
        account = await self._store.get_account(account_id)
        if (
            account is None
            or not account.spotify  # a widget made with another source: no grant to refresh
            or account.key_missing  # never refreshed, its status never written
            or account.status is AccountStatus.RECONNECT_REQUIRED
        ):
            self.forget(account_id)
            self._unkeep(account_id)
            raise AccountGone("account is not connected")
        pending = self._pending_for(account)
        if pending is not None or not await self._writable(account):
            # A kept token still unwritten (the store refused it again just now), or a store
            # that refuses a write: a rotated successor could not be stored either.
            self.counts["unwritable"] += 1
            log.warning(
                "token refresh put off: the store cannot write (a refresh could lose the grant)"
            )
            raise RefreshDeferred("refresh put off: the store cannot write")
        presented = account.refresh_token
        self.counts["refresh"] += 1
        try:
            token = await self._client.refresh(presented)
        except ReconnectRequired as e:
            self.forget(account_id)
            self._unkeep(account_id)
            log.warning("an account's grant is gone (%s): marked reconnect required", e)
            try:
                await self._store.set_status(account_id, AccountStatus.RECONNECT_REQUIRED)
            except StoreError as store_error:
                log.warning("could not store the reconnect status (%s)", store_error)
            raise
        latest = token.refresh_token or presented
        if latest != account.refresh_token:
            # Persist the rotated refresh token before the new access token is used; a store
            # that refuses it must not lose it: keep it, present it next, write it again later.
            self._pending[account_id] = KeptToken(latest, account.refresh_token)
            if not await self._write_pending(account_id):
                self.counts["unsaved"] += 1
                kept = "sealed beside the store" if self._keep() else "in memory"
                log.warning(
                    "the store refused a rotated refresh token: kept %s, written again at the"
                    " next token request",
                    kept,
                )
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
