"""Public id -> published account, cached briefly: the public routes' hot path.

Whatever changes a public link calls :meth:`PublishedAccounts.forget`, announced through the
coordinator: this instance drops the account at once (an old link dies before the answer is
sent), the others on the Redis channel, or within :data:`CACHE_SECONDS` without Redis. Ids not
found are not cached, so a new link works at once everywhere.
"""

from __future__ import annotations

import re

from nowplaying.clock import Clock
from nowplaying.coord.base import Coordinator
from nowplaying.store import Account, Store

PUBLIC_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
"""What a public id looks like (:func:`~nowplaying.engine.accounts.new_public_id` makes 22
characters); anything else is not looked up."""
CACHE_SECONDS = 2.0
CACHE_MAX = 10_000


class PublishedAccounts:
    """The cache of published accounts by public id, dropped on every instance on a change."""

    def __init__(self, store: Store, clock: Clock, coord: Coordinator) -> None:
        self._store = store
        self._clock = clock
        self._coord = coord
        self._cache: dict[str, tuple[float, Account]] = {}
        coord.on_public_change(self.drop)

    async def get(self, public_id: str) -> Account | None:
        """The account published under ``public_id``, or None (a malformed id is not looked
        up). A store outage raises StoreError (answered 503); the token stays sealed."""
        if not PUBLIC_ID.match(public_id):
            return None
        now = self._clock.now()
        hit = self._cache.get(public_id)
        if hit is not None and now < hit[0]:
            return hit[1]
        account = await self._store.get_account_by_public_id(public_id)
        if account is None:
            self._cache.pop(public_id, None)
            return None
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[public_id] = (now + CACHE_SECONDS, account)
        return account

    def cached(self, public_id: str) -> Account | None:
        """The account this instance holds for ``public_id`` now, without asking the store."""
        hit = self._cache.get(public_id)
        return hit[1] if hit is not None and self._clock.now() < hit[0] else None

    async def forget(self, account_id: str) -> None:
        """The account's public link changed: drop it here at once and on every instance."""
        await self._coord.announce_public_change(account_id)

    def drop(self, account_id: str) -> None:
        """Drop this instance's entries for ``account_id`` (the coordinator's listener)."""
        for public_id in [p for p, (_, a) in self._cache.items() if a.id == account_id]:
            del self._cache[public_id]
