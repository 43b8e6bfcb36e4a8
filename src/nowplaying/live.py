"""The live engine: one poller per watched account, one shared state, fanned out to every viewer.

Cost does not grow with the audience: however many requests and SSE viewers an account has, one
task polls Spotify for it. The schedule follows the music — a poll lands just after the playing
track's predicted end, and otherwise every ``poll_seconds`` to catch skips and pauses — and backs
off while nothing plays. A 429 is the *app's* rate limit, so it pauses every account's polling
until ``Retry-After`` passes; viewers are told their data is stale meanwhile.

A poller runs only while its account is watched: an SSE viewer is connected, or a request came in
the last ``watch_ttl`` seconds. Everything waits on an injected clock.

Life cycle: the pause is stored (``pauses``) so a restart honours Spotify's Retry-After, which for
the development-mode quota (``QUOTA_EXCEEDED``) is hours; an account whose grant is gone is
re-checked in the store every ``reconnect_check`` seconds while watched, so a grant made again by
another process or instance is served without a restart; a poller meeting an unexpected error
logs it, reports stale and keeps going; :meth:`LiveHub.drain` tells open streams the server is
going away.
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
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from . import views
from .clock import Clock
from .coord import Coordinator, LocalCoordinator
from .models import Item, Kind, NowPlaying, PlayedItem
from .spotify import RateLimited, ReconnectRequired, SpotifyError
from .store import QUOTA_EXCEEDED, Pause, StoreError

log = logging.getLogger(__name__)

Fetch = Callable[[str], Awaitable[NowPlaying]]
History = Callable[[str], Awaitable[PlayedItem | None]]
Ready = Callable[[str], Awaitable[bool]]
"""Whether an account that needed reconnecting is connected again (a store read, no Spotify)."""


class PauseStore(Protocol):
    """Where the app-wide pause outlives the process (the account store)."""

    async def get_pause(self) -> Pause | None: ...
    async def set_pause(self, pause: Pause) -> None: ...


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

    def view(self, now: float) -> views.State:
        """The ``/api/spotify`` state, progress extrapolated to ``now``."""
        if self.status is Status.RECONNECT:
            return views.error(views.ErrorCode.RECONNECT_REQUIRED)
        if self.playing is None:
            return views.error(views.ErrorCode.UNAVAILABLE)
        return views.state(
            self.playing,
            progress_ms=progress_at(self.playing, now),
            at=int(now * 1000),  # when progressMs holds, for the widget's local clock
            stale=self.status is Status.STALE,
            last=self.last_played,
        )

    def to_json(self, now: float) -> dict[str, Any]:
        """The ``/api/spotify`` object, progress extrapolated to ``now``."""
        return self.view(now).data()


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


@dataclass(slots=True)
class _Plan:
    """A poller's schedule: when to poll next, and what it has met so far."""

    next_poll: float = 0.0
    failures: int = 0
    idle: int = 0
    reconnect: bool = False
    """The grant is gone: check the store (``ready``) instead of polling Spotify."""


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
        pauses: PauseStore | None = None,
        ready: Ready | None = None,
        reconnect_check: float = 5.0,
    ) -> None:
        self._coord: Coordinator = coord or LocalCoordinator()
        self._pauses = pauses
        self._ready = ready
        self.reconnect_check = reconnect_check
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
        """``polls`` made, ``published`` changes, ``rate_limited`` pauses, ``reconnect_checks``,
        ``crashes`` (unexpected errors a poller survived)."""
        self.poll_lag = 0.0
        """How late (seconds) the last poll started after it was due (``/metrics``)."""

    # -- reading -------------------------------------------------------------------------------

    async def current(self, account_id: str) -> Snapshot | None:
        """The account's state for a request: starts its poller if needed, waits for one poll."""
        w = self._watch(account_id)
        w.last_request = self._clock.now()
        self._ensure_poller(w)
        if not w.fresh.is_set():
            with contextlib.suppress(TimeoutError):
                async with self._clock.timeout(self.first_wait):
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
        """Disconnect: stop polling the account and tell its viewers it needs reconnecting.

        Viewers stay subscribed: with ``ready`` configured, a poller keeps checking the store
        for a new grant, so they see the account live again when the owner reconnects.
        """
        w = self._watches.get(account_id)
        if w is None:
            return
        await self._stop(w)
        if not w.subscribers:  # nobody to tell: drop the state with the watch
            self._watches.pop(account_id, None)
            return
        self._publish_local(
            w,
            Snapshot(playing=None, status=Status.RECONNECT, version=self._next_version(w)),
        )
        if self._ready is not None:
            self._ensure_poller(w)

    async def restart(self, account_id: str) -> None:
        """A new grant for the account: poll it afresh now, keeping its viewers (no flicker)."""
        w = self._watches.get(account_id)
        if w is None:
            return
        await self._stop(w)
        w.history_at = None
        if w.snapshot is not None and w.snapshot.status is Status.RECONNECT:
            w.snapshot = replace(w.snapshot, status=Status.STALE)
        if w.watched(self._clock.now(), self.watch_ttl):
            self._ensure_poller(w)

    async def _stop(self, w: _Watch) -> None:
        task, w.task = w.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def instance_id(self) -> str:
        return self._coord.instance_id

    async def start(self) -> None:
        """Join the other instances (a no-op for one process); honour a stored pause."""
        await self._coord.start(self._accept)
        if self._pauses is None:
            return
        try:
            stored = await self._pauses.get_pause()
        except StoreError as e:
            log.warning("could not read the stored rate-limit pause (%s)", type(e).__name__)
            return
        if stored is not None and stored.until > self._clock.now():
            self.paused_until, self.pause_reason = stored.until, stored.reason
            await self._coord.set_pause(stored.until, stored.reason)
            log.warning(
                "Spotify paused this app until %s (%s): no calls before then",
                _utc(stored.until),
                stored.reason,
            )

    async def close(self) -> None:
        """Stop every poller (releasing its lease) and leave the other instances."""
        for w in list(self._watches.values()):
            await self._stop(w)
        self._watches.clear()
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
                w.fresh.set()  # what we know stands until the store says otherwise
                if self._ready is None:
                    return
            else:
                w.fresh.clear()
            w.task = asyncio.create_task(self._run(w), name=f"poll:{w.account_id}")

    async def _run(self, w: _Watch) -> None:
        """Lead (poll) when this instance holds the account's lease, else follow shared state.

        This loop is the poller's outermost boundary: an error nobody expected is logged with
        its traceback, reported to viewers as stale data, and retried after a backoff.
        """
        plan = _Plan(reconnect=w.snapshot is not None and w.snapshot.status is Status.RECONNECT)
        try:
            while await self._wanted(w):
                try:
                    if not await self._step(w, plan):
                        return
                except Exception:  # the one outer guard STYLE.md asks for
                    plan.failures += 1
                    self.counts["crashes"] += 1
                    log.exception("poller failed unexpectedly; backing off and carrying on")
                    with contextlib.suppress(Exception):
                        await self._broadcast_stale(w)
                    await self._clock.sleep(self._backoff(plan.failures))
        finally:
            if w.leader:
                w.leader = False
                with contextlib.suppress(Exception):
                    await self._coord.release_lease(w.account_id)
            if w.task is asyncio.current_task():
                w.task = None

    async def _step(self, w: _Watch, plan: _Plan) -> bool:
        """One turn of the poller: follow, wait, or poll once. False: stop for good."""
        if not await self._coord.hold_lease(w.account_id):
            w.leader = False
            await self._follow(w)
            await self._clock.sleep(self._coord.renew_every or self.poll_seconds)
            return True
        if not w.leader:
            # Taking over: start from the shared state, so versions (the SSE ids every instance
            # and Last-Event-ID compare) go on from the last leader's, whatever our clock says.
            await self._follow(w)
        w.leader = True
        now = self._clock.now()
        paused = await self._paused_until()
        if paused > now:  # the app's rate limit, maybe hit by another instance
            await self._broadcast_stale(w, retry_after=paused - now)
            plan.next_poll = max(plan.next_poll, paused)
        if now < plan.next_poll:
            await self._nap(plan.next_poll - now)
            return True
        if plan.reconnect:
            # The grant is gone: poll nothing until the store holds a new one.
            self.counts["reconnect_checks"] += 1
            if self._ready is None:
                return False
            if not await self._ready_now(w.account_id):
                plan.next_poll = self._clock.now() + self.reconnect_check
                return True
            log.info("an account was connected again: polling it")
            plan.reconnect = False
        self.poll_lag = max(0.0, now - plan.next_poll) if plan.next_poll else 0.0
        self.counts["polls"] += 1
        try:
            playing = await self._fetch(w.account_id)
        except RateLimited as e:
            await self._pause(e.retry_after, e.reason)
            return True
        except ReconnectRequired:
            plan.reconnect = True
            plan.next_poll = self._clock.now() + self.reconnect_check
            await self._broadcast(w, Snapshot(None, Status.RECONNECT, self._next_version(w)))
            return self._ready is not None
        except (SpotifyError, StoreError) as e:
            plan.failures += 1
            log.warning("poll failed (%s); backing off", type(e).__name__)
            await self._broadcast_stale(w)
            plan.next_poll = self._clock.now() + self._backoff(plan.failures)
            return True
        plan.failures = 0
        plan.idle = 0 if playing.active else plan.idle + 1
        last = await self._last_played(w, playing)
        await self._broadcast(
            w, Snapshot(playing, Status.LIVE, self._next_version(w), last_played=last)
        )
        plan.next_poll = self._clock.now() + self._delay(playing, plan.idle)
        return True

    async def _ready_now(self, account_id: str) -> bool:
        assert self._ready is not None  # noqa: S101 - checked by the caller
        try:
            return await self._ready(account_id)
        except StoreError:
            return False

    async def _paused_until(self) -> float:
        """The app-wide pause, ours or another instance's (whose reason we then adopt)."""
        shared = await self._coord.paused_until()
        if shared > self.paused_until:
            self.paused_until = shared
            self.pause_reason = await self._coord.pause_reason()
        return self.paused_until

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
            self._publish_local(w, snap, remote=True)

    async def _broadcast(self, w: _Watch, snap: Snapshot) -> None:
        """Hand a snapshot to this instance's viewers and, when it changed, to every instance."""
        if self._publish_local(w, snap):
            assert w.snapshot is not None  # noqa: S101 - just set by _publish_local
            await self._coord.publish(w.account_id, snapshot_to_wire(w.snapshot))

    async def _broadcast_stale(self, w: _Watch, retry_after: float | None = None) -> None:
        """Mark the state stale here and, when that changed anything, on every instance."""
        if self._stale_local(w, retry_after):
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
        except RateLimited as e:
            await self._pause(e.retry_after, e.reason)
            return old.last_played if old else None
        except (SpotifyError, StoreError) as e:
            log.info("last played lookup failed (%s)", type(e).__name__)
            return old.last_played if old else None

    def refresh_history(self, account_id: str) -> None:
        """Look the last played track up again at the next poll (the owner changed the setting)."""
        w = self._watches.get(account_id)
        if w is not None:
            w.history_at = None

    def _next_version(self, w: _Watch) -> int:
        """The next SSE id. A watch's first one is the clock in ms, so ids keep growing across
        restarts (a reused id would make a viewer's Last-Event-ID skip a real change)."""
        return w.snapshot.version + 1 if w.snapshot else int(self._clock.now() * 1000)

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

    async def _pause(self, retry_after: float, reason: str | None = None) -> None:
        """The app is rate limited: every poller (on every instance, and after a restart) waits,
        every viewer is told data is stale. ``QUOTA_EXCEEDED`` is the development-mode quota,
        whose Retry-After is hours; polling through it is reported to extend it."""
        why = QUOTA_EXCEEDED if reason == QUOTA_EXCEEDED else "rate_limit"
        until = self._clock.now() + max(1.0, retry_after)
        if until > self.paused_until:
            self.paused_until, self.pause_reason = until, why
            self.counts["rate_limited"] += 1
            if why == QUOTA_EXCEEDED:
                log.error(
                    "Spotify's quota is exhausted (QUOTA_EXCEEDED): no calls until %s (%.1f h)",
                    _utc(until),
                    retry_after / 3600,
                )
            else:
                log.warning("Spotify rate limit: pausing all polling for %.0fs", retry_after)
            if self._pauses is not None:
                try:
                    await self._pauses.set_pause(Pause(until, why))
                except StoreError as e:
                    log.warning("could not store the pause (%s)", type(e).__name__)
        await self._coord.set_pause(until, why)
        for w in list(self._watches.values()):
            await self._broadcast_stale(
                w, retry_after=max(0.0, self.paused_until - self._clock.now())
            )

    def _stale_local(self, w: _Watch, retry_after: float | None = None) -> bool:
        """Mark live data stale (locally); whether that changed anything."""
        snap = w.snapshot
        if snap is not None and snap.status is not Status.LIVE:
            return False
        return self._publish_local(
            w,
            Snapshot(
                snap.playing if snap else None,
                Status.STALE,
                self._next_version(w),
                retry_after=retry_after if retry_after is not None else self.poll_seconds,
            ),
        )

    def _publish_local(self, w: _Watch, snap: Snapshot, *, remote: bool = False) -> bool:
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


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _offer(queue: asyncio.Queue[Snapshot], snap: Snapshot) -> None:
    """Put the latest state, dropping an unread older one: a slow viewer only misses history."""
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(snap)
