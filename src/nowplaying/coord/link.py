"""The process's one Redis client (:class:`RedisLink`) and its degraded mode.

A Redis failure never fails a caller: :meth:`RedisLink.call` answers the caller's fallback
(usually "this process decides alone", which is safe, only more expensive), warns once, tries
Redis again at most every ``retry_every`` seconds of the injected clock, and says when it is back.
The pub/sub channel is ``np:events:{db}``: pub/sub ignores databases, and two deployments on one
server must not hear each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import LockError, RedisError

from nowplaying.clock import Clock, SystemClock
from nowplaying.coord.keys import CHANNEL

log = logging.getLogger(__name__)
T = TypeVar("T")

FAILURES = (RedisError, OSError, LockError)
"""What a Redis operation raises when Redis cannot be had (``LockError``: redis-py's lock wraps
some of them)."""


class RedisLink:
    """The process's Redis client (``NOWPLAYING_REDIS_URL``), shared by the coordinator, the call
    budget's ledger, the account problems and the alert claims, and its degraded mode."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        retry_every: float = 2.0,
        socket_timeout: float = 1.0,
    ) -> None:
        self.url = url
        self.clock: Clock = clock or SystemClock()
        self.retry_every = retry_every
        self.redis = aioredis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            decode_responses=True,
        )
        db = self.redis.connection_pool.connection_kwargs.get("db", 0)
        self.channel = f"{CHANNEL}:{db}"
        self.degraded_events = 0
        self._degraded_since: float | None = None
        self._last_attempt = 0.0

    @property
    def degraded(self) -> bool:
        return self._degraded_since is not None

    async def call(self, op: Awaitable[T], fallback: T) -> T:
        """Run one Redis operation; on failure (or while degraded, between retries) fall back.

        A cancellation requested while the operation ran is raised when it returns, even if
        redis-py absorbed it (see :func:`_cancel_kept`)."""
        now = self.clock.now()
        # 0 <=: a wall clock set back (NTP, a VM resumed) retries at once rather than not at all
        if self.degraded and 0 <= now - self._last_attempt < self.retry_every:
            _close(op)
            return fallback
        self._last_attempt = now
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            result = await op
        except FAILURES as e:
            _cancel_kept(task, cancels)
            self.went_down(e)
            return fallback
        _cancel_kept(task, cancels)
        if self._degraded_since is not None:
            log.warning(
                "Redis is back after %.0fs: instances coordinate again",
                now - self._degraded_since,
            )
            self._degraded_since = None
        return result

    def went_down(self, error: Exception) -> None:
        """Redis failed: run degraded (warned once, until an operation succeeds again)."""
        if self._degraded_since is None:
            self._degraded_since = self.clock.now()
            self.degraded_events += 1
            log.warning(
                "Redis unreachable (%s): serving from local state and polling per instance",
                type(error).__name__,
            )

    def subscriber(self) -> aioredis.Redis:
        """A client for one pub/sub subscription: it holds a connection of its own and reads
        without the socket timeout (it waits for messages). The caller closes it."""
        return aioredis.Redis.from_url(self.url, socket_connect_timeout=1.0, decode_responses=True)

    async def close(self) -> None:
        with contextlib.suppress(*FAILURES):
            await self.redis.aclose()


def _cancel_kept(task: asyncio.Task[object] | None, cancels: int) -> None:
    """Raise the cancellation ``task`` was asked for since it had ``cancels`` pending.

    redis-py bounds a command's write with ``asyncio.wait_for``, which on Python 3.11 returns the
    result and drops the caller's cancellation when both land in the same turn of the loop (most
    cancellations of a task in a Redis call, on a local Redis). The task then ran on: a poller
    the hub stopped kept polling and a shutdown waited for it until the deadline cut it off."""
    if task is not None and task.cancelling() > cancels:
        raise asyncio.CancelledError


def _close(op: Awaitable[object]) -> None:
    """Discard an operation that will not be awaited (no 'never awaited' warning)."""
    close: Callable[[], None] | None = getattr(op, "close", None)
    if close is not None:
        close()
