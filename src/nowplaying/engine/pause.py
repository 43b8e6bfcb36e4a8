"""The app-wide pause: after a 429 no account is polled until the upstream's Retry-After passes.

An upstream rations calls per app, so one 429 pauses every poller, on every instance, and after
a restart (the pause is stored): the development-mode quota lasts hours, and polling through it
is reported to extend it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from nowplaying.clock import Clock
from nowplaying.coord.base import Coordinator
from nowplaying.models import QUOTA_EXCEEDED, RATE_LIMIT
from nowplaying.store import Pause, StoreError

__all__ = ["AppPause", "Notices", "PauseStore"]

log = logging.getLogger(__name__)


class PauseStore(Protocol):
    """Where the app-wide pause outlives the process (the account store)."""

    async def get_pause(self) -> Pause | None: ...
    async def set_pause(self, pause: Pause) -> None: ...


class Notices(Protocol):
    """Who tells the owner what needs them (the owner alerts); never waited for."""

    def reconnect_needed(self, account_id: str) -> None: ...
    def paused(self, retry_after: float, reason: str | None) -> None: ...
    def withdrawn(self, what: str, disabled: str, fix: str) -> None: ...


class AppPause:
    """The pause in force: set by :meth:`hit`, shared with every instance, stored for restarts."""

    def __init__(
        self,
        clock: Clock,
        coord: Coordinator,
        *,
        store: PauseStore | None = None,
        notices: Notices | None = None,
    ) -> None:
        self._clock = clock
        self._coord = coord
        self._store = store
        self._notices = notices
        self._listeners: list[Callable[[], Awaitable[None]]] = []
        self.until = 0.0
        """No upstream call before this (epoch seconds)."""
        self.reason = RATE_LIMIT
        """Why: ``QUOTA_EXCEEDED`` or ``rate_limit`` (the rolling window)."""
        self.hits = 0
        """Pauses begun or extended here."""

    @property
    def current(self) -> Pause | None:
        """The pause in force now, or None."""
        if self.until <= self._clock.now():
            return None
        return Pause(self.until, self.reason)

    def on_hit(self, listener: Callable[[], Awaitable[None]]) -> None:
        """Call ``listener`` after every :meth:`hit` (the live engine tells its viewers)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Honour a pause stored before a restart."""
        if self._store is None:
            return
        try:
            stored = await self._store.get_pause()
        except StoreError as e:
            log.warning("could not read the stored rate-limit pause (%s)", type(e).__name__)
            return
        if stored is not None and stored.until > self._clock.now():
            self.until, self.reason = stored.until, stored.reason
            await self._coord.set_pause(stored.until, stored.reason)
            log.warning(
                "Spotify paused this app until %s (%s): no calls before then",
                utc(stored.until),
                stored.reason,
            )

    async def until_now(self) -> float:
        """The pause's end, ours or another instance's (whose reason is then adopted)."""
        shared = await self._coord.paused_until()
        if shared > self.until:
            self.until = shared
            self.reason = await self._coord.pause_reason()
        return self.until

    async def hit(self, retry_after: float, reason: str | None = None) -> None:
        """The upstream answered 429 (to whichever call): the one place a 429 is handled. The
        owner is told (a long pause), every instance pauses, and so does the next process."""
        if self._notices is not None:
            self._notices.paused(retry_after, reason)
        why = QUOTA_EXCEEDED if reason == QUOTA_EXCEEDED else RATE_LIMIT
        until = self._clock.now() + max(1.0, retry_after)
        if until > self.until:
            self.until, self.reason = until, why
            self.hits += 1
            if why == QUOTA_EXCEEDED:
                log.error(
                    "Spotify's quota is exhausted (QUOTA_EXCEEDED): no calls until %s (%.1f h)",
                    utc(until),
                    retry_after / 3600,
                )
            else:
                log.warning("Spotify rate limit: pausing all polling for %.0fs", retry_after)
            if self._store is not None:
                try:
                    await self._store.set_pause(Pause(until, why))
                except StoreError as e:
                    log.warning("could not store the pause (%s)", type(e).__name__)
        await self._coord.set_pause(until, why)
        for listener in self._listeners:
            await listener()


def utc(epoch: float) -> str:
    """A moment for a log line: ``2026-01-01 05:00 UTC``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")
