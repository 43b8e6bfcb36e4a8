"""The one Redis client of a process (:class:`RedisLink`), its degraded mode, and every key name.

Keys, all under ``np:``: ``lease:{account}`` (the polling instance's id, with a TTL),
``watch:{account}`` (someone somewhere watches), ``state:{account}`` (the latest snapshot),
``pause`` and ``pause:reason`` (the app-wide rate-limit pause and the upstream's reason),
``token:{account}`` (the shared access token), ``lock:{name}``, ``refusal:{account}`` (the
upstream's latest refusal of an account), ``alert:{key}`` (an owner alert claimed by one
instance); the call budget's ``budget:calls`` (a sorted set of call times), ``budget:day:{n}``
(calls on UTC day ``n``), ``budget:learned`` and ``budget:active``; and the pub/sub channel
``np:events:{db}``, which carries states and (``"k": "public"``) public-link changes.

One rule for failure, whoever calls: every operation goes through :meth:`RedisLink.call`, which
answers a fallback when Redis fails (socket timeouts of one second), warns once, tries Redis again
at most every ``retry_every`` seconds of the injected clock meanwhile, and says so when it is
back. Callers only choose their fallback (usually: this process decides alone).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import LockError, RedisError

from nowplaying.clock import Clock, SystemClock

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL = "np:events"
"""The pub/sub channel's prefix; the database number follows (``np:events:15``), since Redis
pub/sub ignores databases and two deployments on one server must not hear each other."""


def _named(kind: str) -> Callable[[object], str]:
    """The key of one ``kind`` per name: an account id, a lock's or an alert's name, a UTC day."""

    def key(name: object) -> str:
        return f"np:{kind}:{name}"

    return key


class Keys:
    """Every Redis key name, all under ``np:`` (the module docstring says what each holds)."""

    PAUSE = "np:pause"
    PAUSE_REASON = "np:pause:reason"
    BUDGET_CALLS = "np:budget:calls"
    BUDGET_LEARNED = "np:budget:learned"
    BUDGET_ACTIVE = "np:budget:active"
    lease = staticmethod(_named("lease"))
    watch = staticmethod(_named("watch"))
    state = staticmethod(_named("state"))
    token = staticmethod(_named("token"))
    lock = staticmethod(_named("lock"))
    refusal = staticmethod(_named("refusal"))
    alert = staticmethod(_named("alert"))
    budget_day = staticmethod(_named("budget:day"))


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
        """Run one Redis operation; on failure (or while degraded, between retries) fall back."""
        now = self.clock.now()
        # 0 <=: a wall clock set back (NTP, a VM resumed) retries at once rather than not at all
        if self.degraded and 0 <= now - self._last_attempt < self.retry_every:
            _close(op)
            return fallback
        self._last_attempt = now
        try:
            result = await op
        except FAILURES as e:
            self.went_down(e)
            return fallback
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


def _close(op: Awaitable[object]) -> None:
    """Discard an operation that will not be awaited (no 'never awaited' warning)."""
    close: Callable[[], None] | None = getattr(op, "close", None)
    if close is not None:
        close()
