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
import json
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from .clock import Clock
from .coord import Coordinator, LocalCoordinator
from .models import Item, Kind, NowPlaying, PlayedItem
from .spotify import RateLimited, ReconnectRequired, SpotifyError
from .store import Pause, StoreError

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
    leader: bool = False
    marked_at: float = 0.0

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
        coord: Coordinator | None = None,
    ) -> None:
        self._coord: Coordinator = coord or LocalCoordinator()
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
        self.pause_reason = "rate_limit"
        """Why: Spotify's reason (``QUOTA_EXCEEDED``) or ``rate_limit`` (the rolling window)."""
        self.draining = asyncio.Event()
        """Set when the server begins to shut down: open streams end with a reconnect hint."""
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

    @property
    def pause(self) -> Pause | None:
        """The app-wide pause in force now, or None."""
        if self.paused_until <= self._clock.now():
            return None
        return Pause(self.paused_until, self.pause_reason)

    # -- control -------------------------------------------------------------------------------

    def drain(self) -> None:
        """The server is shutting down: tell every open stream to end (see ``draining``)."""
        self.draining.set()

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

    @property
    def instance_id(self) -> str:
        return self._coord.instance_id

    async def start(self) -> None:
        """Join the other instances (a no-op for one process)."""
        await self._coord.start(self._accept)

    async def close(self) -> None:
        for account_id in list(self._watches):
            await self.forget(account_id)
        await self._coord.close()

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
        """Lead (poll) when this instance holds the account's lease, else follow shared state."""
        failures = idle = 0
        next_poll = 0.0
        try:
            while await self._wanted(w):
                if not await self._coord.hold_lease(w.account_id):
                    w.leader = False
                    await self._follow(w)
                    await self._clock.sleep(self._coord.renew_every or self.poll_seconds)
                    continue
                w.leader = True
                now = self._clock.now()
                paused = max(self.paused_until, await self._coord.paused_until())
                if paused > now:  # the app's rate limit, maybe hit by another instance
                    await self._share_stale(w, retry_after=paused - now)
                    next_poll = max(next_poll, paused)
                if now < next_poll:
                    await self._nap(next_poll - now)
                    continue
                self.counts["polls"] += 1
                try:
                    playing = await self._fetch(w.account_id)
                except RateLimited as e:
                    await self._pause(e.retry_after)
                    continue
                except ReconnectRequired:
                    await self._share(w, Snapshot(None, Status.RECONNECT, _next_version(w)))
                    return
                except (SpotifyError, StoreError) as e:
                    failures += 1
                    log.warning("poll failed (%s); backing off", type(e).__name__)
                    await self._share_stale(w)
                    next_poll = self._clock.now() + self._backoff(failures)
                    continue
                failures = 0
                idle = 0 if playing.active else idle + 1
                last = await self._last_played(w, playing)
                await self._share(
                    w, Snapshot(playing, Status.LIVE, _next_version(w), last_played=last)
                )
                next_poll = self._clock.now() + self._delay(playing, idle)
        finally:
            if w.leader:
                w.leader = False
                await self._coord.release_lease(w.account_id)
            if w.task is asyncio.current_task():
                w.task = None

    async def _wanted(self, w: _Watch) -> bool:
        """Watched here (viewers, recent requests) or, while leading, watched elsewhere."""
        now = self._clock.now()
        if w.watched(now, self.watch_ttl):
            if now - w.marked_at >= (self._coord.renew_every or 0) or w.marked_at == 0:
                w.marked_at = now
                await self._coord.mark_watched(w.account_id)
            return True
        return w.leader and await self._coord.is_watched(w.account_id)

    async def _nap(self, seconds: float) -> None:
        """Sleep until the next poll, but wake in time to renew the lease."""
        renew = self._coord.renew_every
        await self._clock.sleep(min(seconds, renew) if renew else seconds)

    async def _follow(self, w: _Watch) -> None:
        """Another instance polls: take its latest state (pub/sub may have missed one)."""
        payload = await self._coord.latest(w.account_id)
        if payload is not None:
            self._accept(w.account_id, payload)

    def _accept(self, account_id: str, payload: str) -> None:
        """State from the polling instance, for this instance's viewers."""
        w = self._watches.get(account_id)
        if w is None or w.leader:
            return
        try:
            snap = snapshot_from_wire(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored malformed shared state")
            return
        if w.snapshot is None or snap.version != w.snapshot.version or not w.fresh.is_set():
            self._publish(w, snap, remote=True)

    async def _share(self, w: _Watch, snap: Snapshot) -> None:
        """Publish locally, and to other instances when something changed."""
        if self._publish(w, snap):
            assert w.snapshot is not None  # noqa: S101 - just set by _publish
            await self._coord.publish(w.account_id, snapshot_to_wire(w.snapshot))

    async def _share_stale(self, w: _Watch, retry_after: float | None = None) -> None:
        if self._mark_stale(w, retry_after):
            assert w.snapshot is not None  # noqa: S101
            await self._coord.publish(w.account_id, snapshot_to_wire(w.snapshot))

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

    async def _pause(self, retry_after: float) -> None:
        """The app is rate limited: every poller (on every instance) waits, every viewer is told
        data is stale."""
        until = self._clock.now() + max(1.0, retry_after)
        if until > self.paused_until:
            self.paused_until = until
            self.counts["rate_limited"] += 1
            log.warning("Spotify rate limit: pausing all polling for %.0fs", retry_after)
        await self._coord.set_pause(until)
        for w in list(self._watches.values()):
            await self._share_stale(w, retry_after=max(0.0, self.paused_until - self._clock.now()))

    def _mark_stale(self, w: _Watch, retry_after: float | None = None) -> bool:
        """Mark live data stale (locally); whether that changed anything."""
        snap = w.snapshot
        if snap is not None and snap.status is not Status.LIVE:
            return False
        return self._publish(
            w,
            Snapshot(
                snap.playing if snap else None,
                Status.STALE,
                _next_version(w),
                retry_after=retry_after if retry_after is not None else self.poll_seconds,
            ),
        )

    def _publish(self, w: _Watch, snap: Snapshot, *, remote: bool = False) -> bool:
        old = w.snapshot
        changed = (
            old is None
            or old.status is not snap.status
            or _identity(old.playing) != _identity(snap.playing)
            or old.last_played != snap.last_played
            or _jumped(old.playing, snap.playing, self._clock.now())
        )
        if remote:
            changed = True  # the polling instance decided
        elif not changed:
            assert old is not None  # noqa: S101 - narrowed by `changed`
            snap = replace(snap, version=old.version)
        w.snapshot = snap
        w.fresh.set()
        if changed:
            self.counts["published"] += 1
            for q in list(w.subscribers):
                _offer(q, snap)
        return changed


def snapshot_to_wire(snap: Snapshot) -> str:
    """A snapshot as JSON, for other instances."""
    return json.dumps(
        {
            "status": str(snap.status),
            "version": snap.version,
            "retry_after": snap.retry_after,
            "playing": _np_wire(snap.playing) if snap.playing else None,
            "last": {"item": asdict(snap.last_played.item), "at": snap.last_played.played_at}
            if snap.last_played
            else None,
        },
        separators=(",", ":"),
    )


def snapshot_from_wire(payload: str) -> Snapshot:
    """The inverse of :func:`snapshot_to_wire`; raises ValueError/KeyError/TypeError on junk."""
    data = json.loads(payload)
    playing = data["playing"]
    last = data["last"]
    return Snapshot(
        playing=NowPlaying(
            is_playing=bool(playing["is_playing"]),
            kind=Kind(playing["kind"]) if playing["kind"] else None,
            item=_item(playing["item"]) if playing["item"] else None,
            progress_ms=playing["progress_ms"],
            timestamp=float(playing["timestamp"]),
        )
        if playing
        else None,
        status=Status(data["status"]),
        version=int(data["version"]),
        retry_after=data["retry_after"],
        last_played=PlayedItem(_item(last["item"]), float(last["at"])) if last else None,
    )


def _np_wire(np: NowPlaying) -> dict[str, Any]:
    return {
        "is_playing": np.is_playing,
        "kind": str(np.kind) if np.kind else None,
        "item": asdict(np.item) if np.item else None,
        "progress_ms": np.progress_ms,
        "timestamp": np.timestamp,
    }


def _item(data: dict[str, Any]) -> Item:
    return Item(**{**data, "kind": Kind(data["kind"]), "artists": tuple(data["artists"])})


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
