"""The Redis coordinator (``NOWPLAYING_REDIS_URL``): many instances behaving as one.

Degraded (:mod:`.link`), each instance polls for itself and publishes only locally. Only redis-py's
own I/O bounds (socket timeouts, ``get_message``'s poll, the lock's ``blocking_timeout``) run on
real time, like an HTTP client's timeouts: they bound a real socket, which no test clock moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

from redis.asyncio.lock import Lock
from redis.exceptions import LockNotOwnedError

from nowplaying.clock import Clock
from nowplaying.coord.base import (
    CoordinationError,
    FloorListener,
    Listener,
    LocalCoordinator,
    NamedLock,
    PublicListener,
)
from nowplaying.coord.keys import Keys
from nowplaying.coord.ledger import (
    ACTIVE_TTL,
    DAY,
    LEDGER,
    Learned,
    LocalLedger,
    Reading,
    seconds_to_midnight,
)
from nowplaying.coord.link import FAILURES, RedisLink
from nowplaying.models import RATE_LIMIT

log = logging.getLogger(__name__)

_HOLD = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_PAUSE = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
end
return 1
"""
_SPEND = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local per_window, per_day = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if per_window <= 0 then return tostring(window) end
local n = redis.call('ZCARD', KEYS[1])
if n >= per_window then
  local oldest = redis.call('ZRANGE', KEYS[1], n - per_window, n - per_window, 'WITHSCORES')
  return tostring(math.max(0.001, tonumber(oldest[2]) + window - now))
end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= per_day then return ARGV[6] end
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 2 * 86400)
return '0'
"""


class RedisCoordinator:
    """The :class:`~nowplaying.coord.base.Coordinator` on Redis, degrading to in-process."""

    def __init__(
        self,
        link: RedisLink | str,
        *,
        lease_ttl: float = 6.0,
        watch_ttl: float = 20.0,
        lock_ttl: float = 40.0,
        lock_wait: float = 10.0,
        retry_every: float = 2.0,
        clock: Clock | None = None,
        database_lock: NamedLock | None = None,
    ) -> None:
        """``link``: the process's Redis link (the caller's to close), or a URL to open one of
        this coordinator's own (on ``clock``, retrying every ``retry_every`` seconds).
        ``database_lock``: a lock every instance shares without Redis (PostgreSQL's), held
        around every :meth:`lock` so that the locks go on while Redis is unreachable."""
        self._owns_link = isinstance(link, str)
        if isinstance(link, str):
            link = RedisLink(link, clock=clock, retry_every=retry_every)
        self.link = link
        self._clock: Clock = link.clock
        self._redis = link.redis
        self._call = link.call
        self.instance_id = secrets.token_hex(6)
        self.renew_every: float | None = lease_ttl / 3
        self.lease_ttl = lease_ttl
        self.watch_ttl = watch_ttl
        self.lock_ttl = lock_ttl
        """How long a held lock lives in Redis: longer than any body it guards (a token call is
        bounded by ``spotify.TOKEN_DEADLINE``, 20 s), so it never lapses while the body runs."""
        self.lock_wait = lock_wait
        """How long :meth:`lock` waits for another holder before raising CoordinationError."""
        self._database_lock = database_lock
        self.instances = 1
        """Instances with viewers when Redis last answered: while it does not, each one spends
        this share of the call budget."""
        self.channel = link.channel
        self._local = LocalCoordinator()
        self._listener: Listener | None = None
        self._floor: FloorListener | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.listening = asyncio.Event()
        """Set while the pub/sub subscription is up: other instances' changes arrive."""

    @property
    def degraded(self) -> bool:
        return self.link.degraded

    @property
    def degraded_events(self) -> int:
        return self.link.degraded_events

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, listener: Listener, floor: FloorListener | None = None) -> None:
        self._listener, self._floor = listener, floor
        await self._call(self._redis.ping(), None)
        self._task = asyncio.create_task(self._listen(), name="redis-listen")

    async def close(self) -> None:
        self._closing = True
        await self._call(self._redis.zrem(Keys.INSTANCES, self.instance_id), None)
        if self._task is not None:
            self._task.cancel()
            # redis-py can absorb a cancellation inside get_message; the flag ends the loop then,
            # within get_message's one-second poll: a bound on real socket I/O, so real time.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 3.0)
        if self._owns_link:
            await self.link.close()

    # -- leases and watching ---------------------------------------------------------------------

    async def hold_lease(self, account_id: str) -> bool:
        held = await self._call(
            self._redis.eval(
                _HOLD, 1, Keys.lease(account_id), self.instance_id, int(self.lease_ttl * 1000)
            ),
            True,  # degraded: every instance polls for itself
        )
        return bool(held)

    async def release_lease(self, account_id: str) -> None:
        await self._call(
            self._redis.eval(_RELEASE, 1, Keys.lease(account_id), self.instance_id),
            None,
        )

    async def mark_watched(self, account_id: str) -> None:
        """Mark the account watched, and count this instance among those with viewers (how
        many share the call budget while Redis is unreachable: :class:`RedisLedger`)."""
        now = self._clock.now()

        async def marked() -> int:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(Keys.watch(account_id), "1", px=int(self.watch_ttl * 1000))
                pipe.zadd(Keys.INSTANCES, {self.instance_id: now})
                pipe.zremrangebyscore(Keys.INSTANCES, "-inf", now - ACTIVE_TTL)
                pipe.zcard(Keys.INSTANCES)
                *_, n = await pipe.execute()
            return int(n)

        counted = await self._call(marked(), None)
        if counted is not None:
            self.instances = max(1, counted)

    async def is_watched(self, account_id: str) -> bool:
        return bool(await self._call(self._redis.exists(Keys.watch(account_id)), 0))

    # -- state and fan-out -----------------------------------------------------------------------

    async def publish(self, account_id: str, payload: str) -> bool:
        message = json.dumps({"a": account_id, "i": self.instance_id, "p": payload})

        async def both() -> bool:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(Keys.state(account_id), payload, ex=86400)
                pipe.publish(self.channel, message)
                await pipe.execute()
            return True

        return await self._call(both(), False)

    async def latest(self, account_id: str) -> str | None:
        value = await self._call(self._redis.get(Keys.state(account_id)), None)
        return str(value) if value is not None else None

    async def raise_floor(self, account_id: str, version: int) -> None:
        message = json.dumps({"k": "floor", "a": account_id, "v": version, "i": self.instance_id})
        await self._call(self._redis.publish(self.channel, message), None)

    async def _listen(self) -> None:
        """Relay other instances' changes to the local listener; reconnect on failure."""
        backoff = 0.5
        while not self._closing:
            client = self.link.subscriber()
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    backoff = 0.5
                    while not self._closing:
                        message = await pubsub.get_message(timeout=1.0)
                        self.listening.set()  # the first read took the subscription's reply
                        if message is not None:
                            self._deliver(message.get("data"))
            except FAILURES as e:
                self.listening.clear()
                self.link.went_down(e)
                await self._clock.sleep(backoff)
                backoff = min(5.0, backoff * 2)
            finally:
                self.listening.clear()
                with contextlib.suppress(*FAILURES):
                    await client.aclose()

    def on_public_change(self, listener: PublicListener) -> None:
        self._local.on_public_change(listener)

    async def announce_public_change(self, account_id: str) -> None:
        """This instance at once; the others through the channel (a ``"k": "public"`` message).
        Degraded, the others drop it when their cache entry expires."""
        await self._local.announce_public_change(account_id)
        message = json.dumps({"k": "public", "a": account_id, "i": self.instance_id})
        await self._call(self._redis.publish(self.channel, message), None)

    def _deliver(self, data: object) -> None:
        try:
            message = json.loads(str(data))
            if message.get("k") == "public":
                if message["i"] != self.instance_id:
                    self._local.public_changed(str(message["a"]))
                return
            if message.get("k") == "floor":
                if message["i"] != self.instance_id and self._floor is not None:
                    self._floor(str(message["a"]), int(message["v"]))
                return
            account_id, sender, payload = message["a"], message["i"], message["p"]
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignored a malformed message on %s", self.channel)
            return
        if sender != self.instance_id and self._listener is not None:
            self._listener(str(account_id), str(payload))

    # -- the app-wide pause ----------------------------------------------------------------------

    async def set_pause(self, until: float, reason: str = RATE_LIMIT) -> None:
        await self._local.set_pause(until, reason)
        ttl = max(1, int((until - self._clock.now()) * 1000))
        await self._call(
            self._redis.eval(_PAUSE, 2, Keys.PAUSE, Keys.PAUSE_REASON, repr(until), ttl, reason),
            None,
        )

    async def pause_reason(self) -> str:
        value = await self._call(self._redis.get(Keys.PAUSE_REASON), None)
        return str(value) if value else await self._local.pause_reason()

    async def paused_until(self) -> float:
        value = await self._call(self._redis.get(Keys.PAUSE), None)
        local = await self._local.paused_until()
        try:
            return max(local, float(value)) if value is not None else local
        except ValueError:
            return local

    # -- locks and the shared access token ---------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        """A lock across instances (and within this one). The body never runs unheld.

        With a ``database_lock`` the lock is held in the database always, and in Redis too
        while Redis answers: every instance, whether it sees Redis or not, serialises through
        the database, so an instance that has just lost or regained Redis never runs the body
        beside another. Refreshes then go on through an outage, one at a time.

        Raises :class:`~nowplaying.coord.base.CoordinationError`, without running the body, when
        another instance holds the lock for longer than ``lock_wait`` seconds, or when neither
        Redis nor the database lock can be had. The token manager reads that as "refresh later"
        (a refresh two instances make at once could present a rotated-away refresh token and
        lose the grant).
        """
        async with self._local.lock(name), self._held_in_database(name):
            lock = self._redis.lock(
                Keys.lock(name), timeout=self.lock_ttl, blocking_timeout=self.lock_wait
            )
            acquired = await self._call(lock.acquire(), None)
            if acquired is None and self._database_lock is None:
                raise CoordinationError(f"lock {name!r}: Redis is unreachable")
            if acquired is False:
                raise CoordinationError(f"lock {name!r}: still held after {self.lock_wait:g}s")
            try:
                yield
            finally:
                if acquired:
                    await self._release(lock, name)

    def _held_in_database(self, name: str) -> contextlib.AbstractAsyncContextManager[None]:
        if self._database_lock is None:
            return contextlib.nullcontext()
        return self._database_lock(name)

    async def _release(self, lock: Lock, name: str) -> None:
        try:
            await lock.release()
        except LockNotOwnedError:
            log.warning("lock %r outlived its %gs in Redis", name, self.lock_ttl)
        except FAILURES:
            pass  # it expires on its own after lock_ttl

    async def get_token(self, account_id: str) -> str | None:
        value = await self._call(self._redis.get(Keys.token(account_id)), None)
        return str(value) if value is not None else None

    async def put_token(self, account_id: str, payload: str, ttl: float) -> None:
        if ttl > 1:
            await self._call(
                self._redis.set(Keys.token(account_id), payload, px=int(ttl * 1000)), None
            )

    async def drop_token(self, account_id: str) -> None:
        await self._call(self._redis.delete(Keys.token(account_id)), None)

    # -- the call budget ---------------------------------------------------------------------------

    def ledger(self, name: str = LEDGER) -> RedisLedger:
        """The call budget ``name``'s ledger, shared by every instance (local while degraded)."""
        return RedisLedger(self, name)


REGULAR = ":r"
"""The suffix of a regular poll's call in the budget's sorted set (the rest are known moments,
token refreshes and look-ups)."""


class RedisLedger:
    """The call budget's :class:`~nowplaying.coord.ledger.Ledger` in Redis, for every instance.

    A spend is one Lua script (atomic): drop the calls that left the window from the sorted set,
    refuse when the window or the day is full (answering how long until there is room), else add
    the call. While Redis is unreachable this instance counts on its own (a
    :class:`~nowplaying.coord.ledger.LocalLedger`), like the coordinator it belongs to, within
    its share: the limits divided by the instances that had viewers when Redis last answered
    (its calls and accounts then count as many times over, so the pacing keeps to the share).
    """

    def __init__(self, coord: RedisCoordinator, name: str = LEDGER) -> None:
        self._coord = coord
        self._keys = Keys.ledger(name)
        self._redis = coord.link.redis
        self._call = coord.link.call
        self._local = LocalLedger()
        self._seq = 0

    async def try_spend(
        self, now: float, window: float, per_window: int, per_day: int, *, regular: bool = False
    ) -> float:
        self._seq += 1
        day = int(now // DAY)
        result = await self._call(
            self._redis.eval(
                _SPEND,
                2,
                self._keys.calls,
                self._keys.day(day),
                repr(now),
                repr(window),
                per_window,
                per_day,
                f"{self._coord.instance_id}:{self._seq}{REGULAR if regular else ''}",
                repr(seconds_to_midnight(now)),
            ),
            None,
        )
        if result is None:  # each instance within its share, its own calls counted already
            share = self._coord.instances
            return await self._local.try_spend(
                now, window, per_window // share, per_day // share, regular=regular
            )
        if float(result) <= 0:
            self._local.note(now, window, regular=regular)
        return float(result)

    async def used(self, now: float, window: float) -> tuple[int, int]:
        async def both() -> tuple[int, int]:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zcount(self._keys.calls, f"({now - window!r}", "+inf")
                pipe.get(self._keys.day(int(now // DAY)))
                in_window, today = await pipe.execute()
            return int(in_window), int(today or 0)

        counted = await self._call(both(), None)
        if counted is not None:
            return counted
        in_window, today = await self._local.used(now, window)  # as if every instance spent so
        return in_window * self._coord.instances, today * self._coord.instances

    async def learned(self) -> Learned:
        raw = await self._call(self._redis.hgetall(self._keys.learned), None)
        return await self._local.learned() if raw is None else _learned(raw)

    async def learn(self, learned: Learned) -> None:
        await self._local.learn(learned)
        items = [
            "cut_to",
            repr(learned.cut_to) if learned.cut_to is not None else "",
            "cut_at",
            repr(learned.cut_at),
            "per_day",
            str(learned.per_day) if learned.per_day is not None else "",
            "blocked_until",
            repr(learned.blocked_until),
        ]
        await self._call(self._redis.hset(self._keys.learned, items=items), None)

    async def mark_active(self, account_id: str, now: float, window: float) -> Reading:
        local = await self._local.mark_active(account_id, now, window)

        async def read() -> Reading:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zadd(self._keys.active, {account_id: now})
                pipe.zremrangebyscore(self._keys.active, "-inf", now - ACTIVE_TTL)
                pipe.zrange(self._keys.active, 0, -1)
                pipe.zrangebyscore(self._keys.calls, f"({now - window!r}", "+inf")
                pipe.get(self._keys.day(int(now // DAY)))
                pipe.hgetall(self._keys.learned)
                _, _, polled, calls, today, learned = await pipe.execute()
            regular = sum(1 for call in calls if call.endswith(REGULAR))
            return Reading(
                _learned(learned), len(calls), regular, int(today or 0), tuple(sorted(polled))
            )

        reading = await self._call(read(), None)
        if reading is not None:
            return reading
        n = self._coord.instances  # as if every instance spent and polled as this one does
        return replace(
            local,
            in_window=local.in_window * n,
            regular=local.regular * n,
            today=local.today * n,
            accounts=local.accounts * n,
        )

    async def active(self, now: float) -> int:
        async def count() -> int:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zremrangebyscore(self._keys.active, "-inf", now - ACTIVE_TTL)
                pipe.zcard(self._keys.active)
                _, n = await pipe.execute()
            return int(n)

        n = await self._call(count(), None)
        return n if n is not None else await self._local.active(now) * self._coord.instances

    async def forget_active(self, account_id: str) -> None:
        await self._local.forget_active(account_id)
        await self._call(self._redis.zrem(self._keys.active, account_id), None)


def _learned(raw: Mapping[Any, Any]) -> Learned:
    """What was learned, from its hash in Redis (a malformed one is ignored)."""
    try:
        return Learned(
            cut_to=float(raw["cut_to"]) if raw.get("cut_to") else None,
            cut_at=float(raw.get("cut_at") or 0.0),
            per_day=int(raw["per_day"]) if raw.get("per_day") else None,
            blocked_until=float(raw.get("blocked_until") or 0.0),
        )
    except ValueError:
        log.warning("ignored a malformed %s", Keys.BUDGET_LEARNED)
        return Learned()
