"""Clocks that can be passed in.

Everything that waits, expires or schedules takes a :class:`Clock`, so tests move time instead of
sleeping. :class:`SystemClock` is the real one; :class:`FakeClock` only moves when told to.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock seconds since the epoch, and a way to wait on them."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only through :meth:`advance`; sleepers wake when their time comes."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        """How many tasks are waiting on this clock."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    async def advance(self, seconds: float, *, step: float | None = None) -> None:
        """Move time forward, waking each sleeper at its moment and letting it run.

        With ``step``, time moves in increments of at most ``step`` seconds, so work scheduled by
        woken tasks (a poll, then the next sleep) happens in order.
        """
        target = self._now + seconds
        while True:
            await _settle()
            due = self._sleepers[0][0] if self._sleepers else None
            nxt = target if due is None or due > target else due
            if step is not None:
                nxt = min(nxt, self._now + step)
            self._now = max(self._now, nxt)
            woke = False
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, fut = heapq.heappop(self._sleepers)
                if not fut.done():
                    fut.set_result(None)
                    woke = True
            if woke:
                await _settle()
            if self._now >= target and not (self._sleepers and self._sleepers[0][0] <= target):
                break
        await _settle()


async def _settle(rounds: int = 20) -> None:
    """Let ready tasks run until the loop has nothing immediate left to do."""
    for _ in range(rounds):
        await asyncio.sleep(0)
