"""Coordination between instances: in-process (one server) or Redis (many behaving as one).

Shared, because the upstream counts per app and viewers may sit on any instance: a lease per
account (one instance polls it; another takes over when the lease expires), watching marks, the
latest state and its pub/sub channel, the app-wide pause, locks and the access token (one refresh
per expiry, a rotated refresh token never used twice) and the call budget's ledger. Without
Redis each instance polls for itself: safe, only more expensive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from nowplaying.coord.ledger import LEDGER, Ledger, LocalLedger
from nowplaying.models import RATE_LIMIT

log = logging.getLogger(__name__)


class CoordinationError(Exception):
    """What must be shared with other instances cannot be right now (a cross-instance lock
    could not be had). Callers treat it as a transient failure and try again later."""


Listener = Callable[[str, str], None]
"""Called with (account_id, payload) for state published by another instance."""

FloorListener = Callable[[str, int], None]
"""Called with (account_id, version) when another instance's viewers hold that version of the
account, later than the shared state (:meth:`Coordinator.raise_floor`)."""

NamedLock = Callable[[str], contextlib.AbstractAsyncContextManager[None]]
"""A lock across instances held elsewhere than in Redis (the database's advisory lock): raises
:class:`CoordinationError`, without running the block, when it cannot be had."""

PublicListener = Callable[[str], None]
"""Called with the account id whose public link changed (on any instance, this one included)."""


class Coordinator(Protocol):
    """What the live engine and the token manager share with other instances."""

    instance_id: str
    renew_every: float | None
    """How often a lease must be renewed (None: never, leases are implicit)."""

    async def start(self, listener: Listener, floor: FloorListener | None = None) -> None: ...
    async def close(self) -> None: ...

    async def hold_lease(self, account_id: str) -> bool:
        """Take or renew the account's polling lease; whether this instance holds it."""
        ...

    async def release_lease(self, account_id: str) -> None: ...
    async def mark_watched(self, account_id: str) -> None: ...
    async def is_watched(self, account_id: str) -> bool: ...
    async def publish(self, account_id: str, payload: str) -> bool:
        """Share the account's latest state with every instance; whether it was shared (not
        while Redis is unreachable: the caller shares it again later)."""
        ...

    async def latest(self, account_id: str) -> str | None: ...
    async def raise_floor(self, account_id: str, version: int) -> None:
        """Tell every instance that viewers here hold ``version`` of the account, minted here
        while Redis was unreachable and later than the shared state: the polling instance
        publishes its state again above it (the ``floor`` listener of :meth:`start`)."""
        ...

    async def set_pause(self, until: float, reason: str = RATE_LIMIT) -> None:
        """Pause every instance's polling until ``until`` (never shortens a longer pause)."""
        ...

    async def paused_until(self) -> float: ...
    async def pause_reason(self) -> str:
        """Why the current pause was set (``QUOTA_EXCEEDED`` or ``rate_limit``)."""
        ...

    def on_public_change(self, listener: PublicListener) -> None:
        """Call ``listener`` whenever an account's public link changes on any instance."""
        ...

    async def announce_public_change(self, account_id: str) -> None:
        """Tell every instance, this one first, that the account's public link (or what it
        shows) changed, so their public-id caches drop it."""
        ...

    def lock(self, name: str) -> contextlib.AbstractAsyncContextManager[None]: ...
    async def get_token(self, account_id: str) -> str | None: ...
    async def put_token(self, account_id: str, payload: str, ttl: float) -> None: ...
    async def drop_token(self, account_id: str) -> None: ...
    def ledger(self, name: str = LEDGER) -> Ledger:
        """Where the call budget ``name`` counts calls (shared by the instances)."""
        ...


class LocalCoordinator:
    """One process: leases always held, state and pause in memory, asyncio locks."""

    renew_every: float | None = None

    def __init__(self) -> None:
        self.instance_id = secrets.token_hex(6)
        self._pause = 0.0
        self._reason = RATE_LIMIT
        self._locks: dict[str, asyncio.Lock] = {}
        self._public: list[PublicListener] = []

    async def start(self, listener: Listener, floor: FloorListener | None = None) -> None:
        return None

    async def close(self) -> None:
        return None

    async def hold_lease(self, account_id: str) -> bool:
        return True

    async def release_lease(self, account_id: str) -> None:
        return None

    async def mark_watched(self, account_id: str) -> None:
        return None

    async def is_watched(self, account_id: str) -> bool:
        return False

    async def publish(self, account_id: str, payload: str) -> bool:
        return True  # no other instance to tell

    async def latest(self, account_id: str) -> str | None:
        return None

    async def raise_floor(self, account_id: str, version: int) -> None:
        return None  # no other instance mints

    async def set_pause(self, until: float, reason: str = RATE_LIMIT) -> None:
        if until > self._pause:
            self._pause, self._reason = until, reason

    async def paused_until(self) -> float:
        return self._pause

    async def pause_reason(self) -> str:
        return self._reason

    def on_public_change(self, listener: PublicListener) -> None:
        self._public.append(listener)

    async def announce_public_change(self, account_id: str) -> None:
        self.public_changed(account_id)

    def public_changed(self, account_id: str) -> None:
        """Call this process's public-change listeners (the Redis coordinator's relay too)."""
        for listener in self._public:
            listener(account_id)

    @contextlib.asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        async with self._locks.setdefault(name, asyncio.Lock()):
            yield

    async def get_token(self, account_id: str) -> str | None:
        return None

    async def put_token(self, account_id: str, payload: str, ttl: float) -> None:
        return None

    async def drop_token(self, account_id: str) -> None:
        return None

    def ledger(self, name: str = LEDGER) -> Ledger:
        return LocalLedger()
