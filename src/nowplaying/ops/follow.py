"""Following accounts' live state from the side: what the webhooks and the MQTT bridge share.

Each follower is a viewer of the live state (latest wins), so the poller never waits for one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from nowplaying.clock import Clock
from nowplaying.engine.live import LiveHub
from nowplaying.engine.snapshot import Snapshot

log = logging.getLogger(__name__)

Changed = Callable[[str, Snapshot | None, Snapshot], Awaitable[None] | None]


class Following:
    """One follower task per account, handing each change to ``changed``."""

    def __init__(self, hub: LiveHub, clock: Clock, changed: Changed) -> None:
        self.hub = hub
        self.clock = clock
        self.changed = changed
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def accounts(self) -> frozenset[str]:
        return frozenset(self._tasks)

    def set(self, account_ids: Iterable[str]) -> None:
        """Follow exactly ``account_ids`` (new ones start, gone ones stop)."""
        wanted = set(account_ids)
        for gone in set(self._tasks) - wanted:
            self.stop(gone)
        for aid in wanted - set(self._tasks):
            self._tasks[aid] = asyncio.create_task(self._follow(aid))

    def add(self, account_id: str) -> None:
        if account_id not in self._tasks:
            self._tasks[account_id] = asyncio.create_task(self._follow(account_id))

    def stop(self, account_id: str) -> None:
        task = self._tasks.pop(account_id, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, account_id: str) -> None:
        """Every change of the account (the outermost guard: a follower that meets an unexpected
        error logs it and starts over)."""
        while True:
            try:
                async with self.hub.subscribe(account_id) as sub:
                    before: Snapshot | None = None
                    while True:
                        snap = await sub.get()
                        done = self.changed(account_id, before, snap)
                        if done is not None:
                            await done
                        before = snap
            except asyncio.CancelledError:
                raise
            except Exception:  # the outer guard of a background task (STYLE)
                log.exception("a follower of live state failed; following again")
                await self.clock.sleep(1.0)
