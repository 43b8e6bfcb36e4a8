"""What an account played recently: one upstream call per account every :data:`RECENT_TTL` seconds.

Concurrent readers of an account share one request, and a failed read is remembered for the
same time (the previous list, if any, keeps serving), so an outage or a 429 is not retried by
every viewer.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nowplaying.clock import Clock
from nowplaying.models import PlayedItem
from nowplaying.sources.base import SourceError
from nowplaying.store import StoreError

__all__ = ["MAX_ITEMS", "RECENT_TTL", "RecentlyPlayed"]

RECENT_TTL = 180.0
"""Seconds a list is served before the source is asked again."""
MAX_ITEMS = 10

Reader = Callable[[str, int], Awaitable[list[PlayedItem]]]
"""``read(account_id, limit)``: one recently-played request (tokens handled)."""


@dataclass(frozen=True, slots=True)
class _Entry:
    items: tuple[PlayedItem, ...] | None
    """None: the read failed and nothing was known before."""
    at: float
    error: SourceError | StoreError | None = None


class RecentlyPlayed:
    """A per-account cache in front of a source's recently played items."""

    def __init__(self, read: Reader, clock: Clock, *, ttl: float = RECENT_TTL) -> None:
        self._read = read
        self._clock = clock
        self._ttl = ttl
        self._entries: dict[str, _Entry] = {}
        self._flights: dict[str, asyncio.Task[_Entry]] = {}
        self.counts: Counter[str] = Counter()

    async def get(self, account_id: str, limit: int = MAX_ITEMS) -> list[PlayedItem]:
        """The newest ``limit`` items, newest first (read at most once per TTL)."""
        entry = self._entries.get(account_id)
        if entry is None or self._clock.now() - entry.at >= self._ttl:
            entry = await self._refresh(account_id, entry)
        else:
            self.counts["hit"] += 1
        if entry.items is None and entry.error is not None:
            raise entry.error
        return list(entry.items or ())[:limit]

    def forget(self, account_id: str) -> None:
        """Drop what is known (the owner turned sharing off, or disconnected)."""
        self._entries.pop(account_id, None)

    async def _refresh(self, account_id: str, old: _Entry | None) -> _Entry:
        task = self._flights.get(account_id)
        if task is None:
            task = asyncio.create_task(self._load(account_id, old))
            self._flights[account_id] = task
            task.add_done_callback(functools.partial(self._landed, account_id))
        else:
            self.counts["hit"] += 1
        # Shielded: a viewer that goes away does not cancel the read the others wait for.
        return await asyncio.shield(task)

    def _landed(self, account_id: str, task: asyncio.Task[_Entry]) -> None:
        if self._flights.get(account_id) is task:
            del self._flights[account_id]
        if not task.cancelled() and task.exception() is None:
            self._entries[account_id] = task.result()

    async def _load(self, account_id: str, old: _Entry | None) -> _Entry:
        self.counts["call"] += 1
        now = self._clock.now()
        try:
            items = await self._read(account_id, MAX_ITEMS)
        except (SourceError, StoreError) as e:  # remembered for the TTL, the old list kept
            return _Entry(old.items if old else None, now, e)
        return _Entry(tuple(items[:MAX_ITEMS]), now)
