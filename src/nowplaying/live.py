"""The live engine: one poller per watched account, one shared state, fanned out to every viewer.

Cost does not grow with the audience: however many requests and SSE viewers an account has, one
task polls Spotify for it. The schedule follows the music — a poll lands just after the playing
track's predicted end, and otherwise every ``poll_seconds`` to catch skips and pauses — and backs
off while nothing plays. A 429 is the *app's* rate limit, so it pauses every account's polling
until ``Retry-After`` passes; viewers are told their data is stale meanwhile.

A poller runs only while its account is watched: an SSE viewer is connected, or a request came in
the last ``watch_ttl`` seconds. Everything waits on an injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from .clock import Clock
from .models import NowPlaying, PlayedItem
from .spotify import RateLimited, ReconnectRequired, SpotifyError
from .store import StoreError

log = logging.getLogger(__name__)

Fetch = Callable[[str], Awaitable[NowPlaying]]
History = Callable[[str], Awaitable[PlayedItem | None]]


class Status(StrEnum):
    LIVE = "live"
    STALE = "stale"
    RECONNECT = "reconnect_required"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one account plays, as last seen, and how trustworthy that is."""

    playing: NowPlaying | None
    """None until a poll has succeeded."""
    status: Status
    version: int
    retry_after: float | None = None
    last_played: PlayedItem | None = None
    """The last track played, when the owner shows it and nothing plays now."""

    def to_json(self, now: float) -> dict[str, Any]:
        """The ``/api/spotify`` object, progress extrapolated to ``now``."""
        if self.status is Status.RECONNECT:
            return {"error": "reconnect_required"}
        if self.playing is None:
            return {"error": "unavailable"}
        data = self.playing.to_json()
        if not self.playing.active and self.last_played is not None:
            data["lastPlayed"] = self.last_played.to_json()
        progress = progress_at(self.playing, now)
        if progress is not None and "progressMs" in data:
            data["progressMs"] = progress
            data["at"] = int(now * 1000)  # when progressMs holds, for the widget's local clock
        if self.status is Status.STALE:
            data["stale"] = True
        return data


def progress_at(playing: NowPlaying, now: float) -> int | None:
    """Where playback is at ``now``, moving on from the measured progress while it plays."""
    if playing.progress_ms is None:
        return None
    if not playing.is_playing:
        return playing.progress_ms
    moved = playing.progress_ms + int(max(0.0, now - playing.timestamp) * 1000)
    return min(moved, playing.item.duration_ms) if playing.item else moved


def _identity(playing: NowPlaying | None) -> tuple[object, ...]:
    if playing is None:
        return (None,)
    item = playing.item
    key = (item.uri or item.id or item.title, item.title) if item else None
    return (playing.kind, key, playing.is_playing, playing.active)


@dataclass(eq=False)
class _Watch:
    account_id: str
    snapshot: Snapshot | None = None
    subscribers: set[asyncio.Queue[Snapshot]] = field(default_factory=set)
    last_request: float = 0.0
    task: asyncio.Task[None] | None = None
    fresh: asyncio.Event = field(default_factory=asyncio.Event)
    history_at: float | None = None

    def watched(self, now: float, ttl: float) -> bool:
        return bool(self.subscribers) or now - self.last_request < ttl


class LiveHub:
    """Shared now-playing state per account, kept fresh by one poller each while watched."""

    def __init__(
        self,
        fetch: Fetch,
        clock: Clock,
        *,
        poll_seconds: float = 5.0,
        idle_max: float = 30.0,
        backoff_max: float = 30.0,
        end_margin: float = 0.3,
        watch_ttl: float = 60.0,
        first_wait: float = 8.0,
        rng: random.Random | None = None,
        history: History | None = None,
        history_ttl: float = 300.0,
    ) -> None:
        self._fetch = fetch
        self._history = history
        self.history_ttl = history_ttl
        self._clock = clock
        self.poll_seconds = poll_seconds
        self.idle_max = idle_max
        self.backoff_max = backoff_max
        self.end_margin = end_margin
        self.watch_ttl = watch_ttl
        self.first_wait = first_wait
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._watches: dict[str, _Watch] = {}
        self.paused_until = 0.0
        """The app-wide pause after a 429 (epoch seconds)."""
        self.counts: Counter[str] = Counter()
        """``polls`` made, ``published`` changes, ``rate_limited`` pauses."""

    # -- reading -------------------------------------------------------------------------------

    async def current(self, account_id: str) -> Snapshot | None:
        """The account's state for a request: starts its poller if needed, waits for one poll."""
        w = self._watch(account_id)
        w.last_request = self._clock.now()
        self._ensure_poller(w)
        if not w.fresh.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.first_wait):
                    await w.fresh.wait()
        return w.snapshot

    @contextlib.asynccontextmanager
    async def subscribe(self, account_id: str) -> AsyncIterator[asyncio.Queue[Snapshot]]:
        """A queue that receives every change (latest wins) while the context is open."""
        w = self._watch(account_id)
        queue: asyncio.Queue[Snapshot] = asyncio.Queue(maxsize=1)
        w.subscribers.add(queue)
        self._ensure_poller(w)
        if w.snapshot is not None and w.fresh.is_set():
            queue.put_nowait(w.snapshot)
        try:
            yield queue
        finally:
            w.subscribers.discard(queue)
            w.last_request = max(w.last_request, self._clock.now())

    def peek(self, account_id: str) -> Snapshot | None:
        """The last known state, without starting anything."""
        w = self._watches.get(account_id)
        return w.snapshot if w else None

    def viewers(self, account_id: str) -> int:
        w = self._watches.get(account_id)
        return len(w.subscribers) if w else 0

    def polling(self, account_id: str) -> bool:
        w = self._watches.get(account_id)
        return bool(w and w.task and not w.task.done())

    # -- control -------------------------------------------------------------------------------

    async def forget(self, account_id: str) -> None:
        """Stop polling an account and drop its state (logout, disconnect, reconnect)."""
        w = self._watches.pop(account_id, None)
        if w is None:
            return
        if w.task is not None:
            w.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await w.task
        gone = Snapshot(playing=None, status=Status.RECONNECT, version=_next_version(w))
        for q in list(w.subscribers):
            _offer(q, gone)

    async def close(self) -> None:
        for account_id in list(self._watches):
            await self.forget(account_id)

    # -- polling -------------------------------------------------------------------------------

    def _watch(self, account_id: str) -> _Watch:
        w = self._watches.get(account_id)
        if w is None:
            w = self._watches[account_id] = _Watch(account_id)
        return w

    def _ensure_poller(self, w: _Watch) -> None:
        if w.task is None or w.task.done():
            if w.snapshot is not None and w.snapshot.status is Status.RECONNECT:
                w.fresh.set()
                return
            w.fresh.clear()
            w.task = asyncio.create_task(self._run(w), name=f"poll:{w.account_id}")

    async def _run(self, w: _Watch) -> None:
        failures = 0
        idle = 0
        while w.watched(self._clock.now(), self.watch_ttl):
            wait = self.paused_until - self._clock.now()
            if wait > 0:
                await self._clock.sleep(wait)
                continue
            self.counts["polls"] += 1
            try:
                playing = await self._fetch(w.account_id)
            except RateLimited as e:
                self._pause(e.retry_after)
                continue
            except ReconnectRequired:
                self._publish(w, Snapshot(None, Status.RECONNECT, _next_version(w)))
                return
            except (SpotifyError, StoreError) as e:
                failures += 1
                log.warning("poll failed (%s); backing off", type(e).__name__)
                self._mark_stale(w)
                await self._clock.sleep(self._backoff(failures))
                continue
            failures = 0
            idle = 0 if playing.active else idle + 1
            last = await self._last_played(w, playing)
            self._publish(w, Snapshot(playing, Status.LIVE, _next_version(w), last_played=last))
            await self._clock.sleep(self._delay(playing, idle))
        w.task = None

    async def _last_played(self, w: _Watch, playing: NowPlaying) -> PlayedItem | None:
        """While nothing plays, the last played track: looked up when playback has just ended
        and then at most every ``history_ttl`` seconds, so idle accounts stay cheap."""
        old = w.snapshot
        if playing.active or self._history is None:
            return None
        just_ended = bool(old and old.playing and old.playing.active)
        now = self._clock.now()
        if not just_ended and w.history_at is not None and now - w.history_at < self.history_ttl:
            return old.last_played if old else None
        w.history_at = now
        self.counts["history"] += 1
        try:
            return await self._history(w.account_id)
        except (SpotifyError, StoreError) as e:
            log.info("last played lookup failed (%s)", type(e).__name__)
            return old.last_played if old else None

    def refresh_history(self, account_id: str) -> None:
        """Look the last played track up again at the next poll (the owner changed the setting)."""
        w = self._watches.get(account_id)
        if w is not None:
            w.history_at = None

    def _delay(self, playing: NowPlaying, idle: int) -> float:
        """When to poll next: at the predicted track end, or the poll interval, or idle backoff."""
        if not playing.active:
            return min(self.idle_max, self.poll_seconds * (1.5 ** max(0, idle - 1)))
        remaining = playing.remaining_ms
        if playing.is_playing and remaining is not None:
            return min(self.poll_seconds, remaining / 1000 + self.end_margin)
        return self.poll_seconds

    def _backoff(self, failures: int) -> float:
        cap = min(self.backoff_max, self.poll_seconds * 2.0 ** (failures - 1))
        return cap * self._rng.uniform(0.5, 1.0)

    def _pause(self, retry_after: float) -> None:
        """The app is rate limited: every poller waits, every viewer is told data is stale."""
        until = self._clock.now() + max(1.0, retry_after)
        if until > self.paused_until:
            self.paused_until = until
            self.counts["rate_limited"] += 1
            log.warning("Spotify rate limit: pausing all polling for %.0fs", retry_after)
        for w in self._watches.values():
            self._mark_stale(w, retry_after=max(0.0, self.paused_until - self._clock.now()))

    def _mark_stale(self, w: _Watch, retry_after: float | None = None) -> None:
        snap = w.snapshot
        if snap is None or snap.status is Status.LIVE:
            self._publish(
                w,
                Snapshot(
                    snap.playing if snap else None,
                    Status.STALE,
                    _next_version(w),
                    retry_after=retry_after if retry_after is not None else self.poll_seconds,
                ),
            )

    def _publish(self, w: _Watch, snap: Snapshot) -> None:
        old = w.snapshot
        changed = (
            old is None
            or old.status is not snap.status
            or _identity(old.playing) != _identity(snap.playing)
            or old.last_played != snap.last_played
            or _jumped(old.playing, snap.playing, self._clock.now())
        )
        if not changed:
            assert old is not None  # noqa: S101 - narrowed by `changed`
            snap = replace(snap, version=old.version)
        w.snapshot = snap
        w.fresh.set()
        if changed:
            self.counts["published"] += 1
            for q in list(w.subscribers):
                _offer(q, snap)


def _jumped(old: NowPlaying | None, new: NowPlaying | None, now: float) -> bool:
    """A seek: progress is more than 3 s away from where the old state predicted."""
    if old is None or new is None or new.progress_ms is None:
        return False
    predicted = progress_at(old, now)
    return predicted is not None and abs(predicted - new.progress_ms) > 3000


def _next_version(w: _Watch) -> int:
    return (w.snapshot.version if w.snapshot else 0) + 1


def _offer(queue: asyncio.Queue[Snapshot], snap: Snapshot) -> None:
    """Put the latest state, dropping an unread older one: a slow viewer only misses history."""
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(snap)
