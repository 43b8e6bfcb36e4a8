"""Clocks that can be passed in: :class:`SystemClock`, and :class:`FakeClock` for tests.

A clock owns every wait (:meth:`Clock.sleep`, :meth:`Clock.timeout`), so nothing in the service
waits on a timer a test cannot move.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Protocol


class Clock(Protocol):
    """Wall-clock seconds since the epoch, and a way to wait on them."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        """Like ``asyncio.timeout(seconds)``, in this clock's time: the body is cancelled once
        ``seconds`` have passed and the block raises :class:`TimeoutError`; None never fires."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(seconds)


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
        await self._wake_at(self._now + seconds)

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        return _FakeTimeout(self, seconds)

    def _wake_at(self, when: float) -> asyncio.Future[None]:
        """A future that :meth:`advance` resolves once time reaches ``when``."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._seq), fut))
        return fut

    @property
    def sleepers(self) -> int:
        """How many tasks are waiting on this clock (a sleep or a pending timeout each)."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    async def advance(self, seconds: float, *, step: float | None = None) -> None:
        """Move time forward, waking each sleeper at its moment and letting it run.

        With ``step``, time moves in increments of at most ``step`` seconds, so work scheduled by
        woken tasks (a poll, then the next sleep) happens in order.
        """
        target = self._now + seconds
        while True:
            await _settle()
            self._drop_done()
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

    def _drop_done(self) -> None:
        """Forget cancelled waits at the head (a timeout whose body finished, a cancelled sleep),
        so time does not stop at moments nobody waits for any more."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)


class _FakeTimeout:
    """``asyncio.timeout`` driven by a :class:`FakeClock`.

    The real ``asyncio.Timeout`` does the cancelling (so nesting, ``uncancel`` and the
    ``TimeoutError`` behave exactly as in production); it starts with no deadline, and a wait on
    the fake clock reschedules it to "now" when fake time reaches the deadline.
    """

    def __init__(self, clock: FakeClock, seconds: float | None) -> None:
        self._clock = clock
        self._seconds = seconds
        self._inner = asyncio.timeout(None)
        self._wait: asyncio.Future[None] | None = None
        self._open = False

    async def __aenter__(self) -> _FakeTimeout:
        await self._inner.__aenter__()
        self._open = True
        if self._seconds is not None:
            if self._seconds <= 0:
                self._fire()
            else:
                self._wait = self._clock._wake_at(self._clock.now() + self._seconds)
                self._wait.add_done_callback(self._woken)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False
        if self._wait is not None:
            self._wait.cancel()
        await self._inner.__aexit__(exc_type, exc, tb)

    def expired(self) -> bool:
        """Whether the deadline passed (as ``asyncio.Timeout.expired``)."""
        return self._inner.expired()

    def _woken(self, wait: asyncio.Future[None]) -> None:
        if not wait.cancelled():
            self._fire()

    def _fire(self) -> None:
        if self._open:  # the body may have finished between the wake-up and this callback
            self._inner.reschedule(asyncio.get_running_loop().time())


async def _settle(rounds: int = 20) -> None:
    """Let ready tasks run until the loop has nothing immediate left to do."""
    for _ in range(rounds):
        await asyncio.sleep(0)
