"""The live engine: one poller per watched account, one shared state, fanned out to every viewer.

Cost does not grow with the audience: however many viewers an account has, one task reads its
source when the schedule says, and only while someone watches (a viewer connected, or a request
in the last ``watch_ttl`` seconds). With several instances, the one holding the account's lease
polls and the others follow its state. A poller that meets an unexpected error logs it, reports
stale and keeps going: a task that dies silently is found only by the next viewer waiting on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

from nowplaying.clock import Clock
from nowplaying.coord.base import Coordinator, LocalCoordinator
from nowplaying.engine.fanout import Subscription
from nowplaying.engine.merge import same_track
from nowplaying.engine.pause import AppPause
from nowplaying.engine.pulls import Pulls
from nowplaying.engine.pushes import Pushes
from nowplaying.engine.reads import Reads
from nowplaying.engine.schedule import Plan, Schedule
from nowplaying.engine.snapshot import Snapshot, Status, progress_at
from nowplaying.engine.watch import Watch
from nowplaying.models import AccountStatus, NowPlaying, PlayedItem, SourceKind
from nowplaying.sources.base import RateLimited, ReconnectRequired, SourceError
from nowplaying.sources.budget import CallBudget, OverBudget, regular_poll
from nowplaying.sources.push import Event, Push
from nowplaying.store import Pause, StoreError

__all__ = ["LiveHub", "Snapshot", "Status", "progress_at"]

log = logging.getLogger(__name__)

Ready = Callable[[str], Awaitable[bool]]
"""Whether an account that needed reconnecting is connected again (a store read, no upstream)."""


class LiveHub:
    """Shared now-playing state per account, kept fresh by one poller each while watched."""

    def __init__(
        self,
        reads: Reads,
        clock: Clock,
        *,
        schedule: Schedule | None = None,
        pause: AppPause | None = None,
        coord: Coordinator | None = None,
        budget: CallBudget | None = None,
        ready: Ready | None = None,
        pulls: Pulls | None = None,
        watch_ttl: float = 60.0,
        first_wait: float = 8.0,
        history_ttl: float = 300.0,
    ) -> None:
        self.reads = reads
        """What the accounts play, read from their source."""
        self._clock = clock
        self.schedule = schedule or Schedule()
        """When each account is polled next (:mod:`nowplaying.engine.schedule`)."""
        self._coord: Coordinator = coord or LocalCoordinator()
        self.app_pause = pause or AppPause(clock, self._coord)
        """The app-wide pause after a 429 (shared with the other instances through ``coord``)."""
        self._budget = budget
        """With a budget, accounts are polled as often as it allows (:mod:`.schedule`)."""
        self._ready = ready
        self.pulls = pulls
        """The pull sources each widget may have linked (None: every widget is Spotify's)."""
        self.watch_ttl = watch_ttl
        self.first_wait = first_wait
        self.history_ttl = history_ttl
        self.pushes = Pushes(clock, self._publish_everywhere)
        """The push in force on each watch (:mod:`.pushes`)."""
        self._watches: dict[str, Watch] = {}
        self.counts: Counter[str] = Counter()
        """``polls`` made, ``published`` changes, ``reconnect_checks``, ``history`` look-ups,
        ``crashes`` (unexpected errors a poller survived)."""
        self.poll_lag = 0.0
        """How late (seconds) the last poll started after it was due (``/metrics``)."""

    @property
    def poll_seconds(self) -> float:
        """The poll interval while playing: how long data may lag (a Retry-After hint)."""
        return self.schedule.poll_seconds

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
    async def subscribe(self, account_id: str) -> AsyncIterator[Subscription]:
        """Every change (latest wins) while the context is open, the current state first."""
        w = self._watch(account_id)
        sub = w.channel.subscribe(w.snapshot if w.fresh.is_set() else None)
        self._ensure_poller(w)
        try:
            yield sub
        finally:
            sub.close()
            w.last_request = max(w.last_request, self._clock.now())

    def touch(self, account_id: str) -> Snapshot | None:
        """As :meth:`current` for a request answered without waiting (the web's fast path):
        the state once a poll has been seen, else None."""
        w = self._watches.get(account_id)
        if w is None or not w.fresh.is_set():
            return None
        w.last_request = self._clock.now()
        self._ensure_poller(w)
        return w.snapshot

    def peek(self, account_id: str) -> Snapshot | None:
        """The last known state, without starting anything."""
        w = self._watches.get(account_id)
        return w.snapshot if w else None

    def viewers(self, account_id: str) -> int:
        w = self._watches.get(account_id)
        return len(w.channel) if w else 0

    def polling(self, account_id: str) -> bool:
        w = self._watches.get(account_id)
        return bool(w and w.task and not w.task.done())

    @property
    def pause(self) -> Pause | None:
        """The app-wide pause in force now, or None."""
        return self.app_pause.current

    # -- control -------------------------------------------------------------------------------

    async def forget(self, account_id: str) -> None:
        """Disconnect: stop polling the account and tell its viewers it needs reconnecting.

        Viewers stay subscribed: with ``ready`` configured, a poller keeps checking the store
        for a new grant, so they see the account live again when the owner reconnects.
        """
        w = self._watches.get(account_id)
        if w is None:
            return
        await self._stop(w)
        if not w.channel:  # nobody to tell: drop the state with the watch
            self._watches.pop(account_id, None)
            return
        self._publish_here(w, Snapshot.reconnect(w.next_version(self._clock.now())))
        if self._ready is not None:
            self._ensure_poller(w)

    async def restart(self, account_id: str) -> None:
        """A new grant for the account, or a source linked or unlinked: poll it afresh now,
        keeping its viewers (no flicker)."""
        w = self._watches.get(account_id)
        if w is None:
            return
        await self._stop(w)
        w.history_at = None
        w.pull.listed_at = None  # a source linked or unlinked: list them again
        if w.snapshot is not None and w.snapshot.grant_gone:
            w.snapshot = replace(w.snapshot, grant=AccountStatus.ACTIVE)
        if w.watched(self._clock.now(), self.watch_ttl):
            self._ensure_poller(w)

    # -- pushes --------------------------------------------------------------------------------

    async def push(self, account_id: str, push: Push) -> None:
        """A player pushed what plays (or paused, or finished): every viewer is told at once,
        merged with the polled source (:mod:`.merge`); no upstream call is made. A playing-now
        stops counting at its ``expires_at``; a finished listen ends the matching one."""
        w = self._watch(account_id)
        if push.event is Event.LISTENED:
            if w.pushed is None or not same_track(w.pushed.playing, push.playing):
                return
            w.pushed = None
        else:
            w.pushed = push
            self.pushes.expire_later(w, push)
        self.counts["pushes"] += 1
        old = w.snapshot
        shown = w.shown(self._clock.now())
        last = old.last_played if old is not None and not (shown and shown.active) else None
        await self._publish_everywhere(w, w.live(self._clock.now(), shown, last))

    async def _stop(self, w: Watch) -> None:
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
        await self._coord.start(self._received, self._floor_raised)
        await self.app_pause.start()

    async def close(self) -> None:
        """Stop every poller (releasing its lease) and leave the other instances."""
        for w in list(self._watches.values()):
            await self._stop(w)
            for task in (w.expiry, w.sharing, w.listing):
                if task is not None:
                    task.cancel()
        self._watches.clear()
        await self._coord.close()

    # -- polling -------------------------------------------------------------------------------

    def _watch(self, account_id: str) -> Watch:
        w = self._watches.get(account_id)
        if w is None:
            w = self._watches[account_id] = Watch(account_id)
        return w

    def _ensure_poller(self, w: Watch) -> None:
        if w.task is None or w.task.done():
            if w.snapshot is not None and w.snapshot.grant_gone:
                w.fresh.set()  # what we know stands until the store says otherwise
                if self._ready is None:
                    return
            else:
                w.fresh.clear()
            w.plan = None  # a new poller starts afresh (only _listed keeps the plan)
            w.task = asyncio.create_task(self._run(w), name=f"poll:{w.account_id}")

    async def _run(self, w: Watch) -> None:
        """Lead (poll) when this instance holds the account's lease, else follow shared state.

        This loop is the poller's outermost boundary: an error nobody expected is logged with
        its traceback, reported to viewers as stale data, and retried after a backoff.
        """
        if w.plan is None:
            # The first poll is a known moment: a viewer waits for it, so it never yields.
            w.plan = Plan(reconnect=w.snapshot is not None and w.snapshot.grant_gone, known=True)
        plan = w.plan
        try:
            while await self._wanted(w):
                try:
                    wake = await self._step(w, plan)
                except Exception:  # the one outer guard STYLE.md asks for
                    self.counts["crashes"] += 1
                    log.exception("poller failed unexpectedly; backing off and carrying on")
                    with contextlib.suppress(Exception):
                        await self._publish_stale_everywhere(w)
                    wake = self.schedule.failed(plan, self._clock.now())
                if wake is None:
                    return
                await self._sleep_until(wake)
        finally:
            if w.leader:
                w.leader = False
                with contextlib.suppress(Exception):
                    await self._coord.release_lease(w.account_id)
                    if self._budget is not None:  # its share of the budget goes to the others
                        await self._budget.idle(w.account_id)
                    if self.pulls is not None:
                        await self.pulls.idle(w.account_id)
            if w.task is asyncio.current_task():
                w.task = None

    async def _step(self, w: Watch, plan: Plan) -> float | None:
        """One turn of the poller (follow, or read each source that is due): when the next read
        is due, or None to stop for good (the grant is gone and nothing can bring it back)."""
        if not await self._lead(w):
            return self._clock.now() + (self._coord.renew_every or self.poll_seconds)
        if self.pulls is None:
            return await self._step_spotify(w, plan)
        wakes: list[float | None] = []
        if w.pull.spotify:  # taken for Spotify's until its sources are listed (see _lost_grant)
            wakes.append(await self._step_spotify(w, plan))
        if self.pulls.due(w.pull) and (w.listing is None or w.listing.done()):  # no poll waits
            w.listing = asyncio.create_task(self._listed(w), name=f"sources:{w.account_id}")
        wakes.append(await self.pulls.step(w.account_id, w.pull))
        if w.pull.kinds or not w.pull.spotify:  # the pull sources' news (or the pushes alone)
            await self._publish_shown(w, nothing_to_poll=not w.pull.spotify)
        due = [wake for wake in wakes if wake is not None]
        # Nothing due: a lost grant waits for the store, a push-only widget for a source linked.
        idle = None if w.pull.spotify else self._clock.now() + self.pulls.relist
        return min(due) if due else idle

    async def _listed(self, w: Watch) -> None:
        """List the widget's sources; changed, its poller starts again (its plan kept)."""
        assert self.pulls is not None  # noqa: S101 - only called with pull sources
        before = (w.pull.spotify, w.pull.kinds)
        await self.pulls.refresh(w.account_id, w.pull)
        if (w.pull.spotify, w.pull.kinds) != before and w.task is not None and not w.task.done():
            await self._stop(w)
            w.task = asyncio.create_task(self._run(w), name=f"poll:{w.account_id}")

    async def _publish_shown(self, w: Watch, *, nothing_to_poll: bool = False) -> None:
        """Publish the merged state (when a source has said something, or none can)."""
        shown = w.shown(self._clock.now())
        if shown is None and nothing_to_poll:
            shown = NowPlaying(False, timestamp=self._clock.now(), source=SourceKind.PUSH)
        if shown is not None:
            last = await self._last_played(w, shown)
            await self._publish_everywhere(w, w.live(self._clock.now(), shown, last))

    async def _step_spotify(self, w: Watch, plan: Plan) -> float | None:
        """Poll the widget's Spotify source if it is time (see :meth:`_step`)."""
        now = self._clock.now()
        paused = await self.app_pause.until_now()
        if paused > now:  # the app's rate limit, maybe hit by another instance
            await self._publish_stale_everywhere(w, retry_after=paused - now)
            self.schedule.paused(plan, paused)
        if now < plan.next_poll:
            return plan.next_poll
        if plan.reconnect:
            # The grant is gone: poll nothing until the store holds a new one.
            self.counts["reconnect_checks"] += 1
            if self._ready is None:
                return None
            if not await self._ready_now(w.account_id):
                return self.schedule.lost_grant(plan, self._clock.now())
            log.info("an account was connected again: polling it")
            self.schedule.regained(plan)
        paid, wake = await self._room(plan)
        if wake is not None:
            return wake
        self.poll_lag = max(0.0, now - plan.next_poll) if plan.next_poll else 0.0
        self.counts["polls"] += 1
        try:
            with regular_poll(paid) if not plan.known else contextlib.nullcontext():
                playing = await self.reads.now(w.account_id)
        except RateLimited as e:
            await self._rate_limited(e)
            return self.schedule.paused(plan, self.app_pause.until)
        except ReconnectRequired:
            return await self._lost_grant(w, plan)
        except (SourceError, StoreError) as e:
            log.warning("poll failed (%s); backing off", type(e).__name__)
            await self._publish_stale_everywhere(w)
            return self.schedule.failed(plan, self._clock.now())
        w.polled = playing
        shown = w.shown(self._clock.now()) or playing
        last = await self._last_played(w, shown)
        await self._publish_everywhere(w, w.live(self._clock.now(), shown, last))
        if self._budget is not None:
            share = await self._budget.interval(w.account_id)
            plan.share, plan.slot, plan.slots = share.every, share.slot, share.slots
            plan.spare = share.spare
        return self.schedule.played(plan, playing, self._clock.now())

    async def _lead(self, w: Watch) -> bool:
        """Take or renew the account's lease: whether this instance polls it (if not, it has
        taken the shared state)."""
        if not await self._coord.hold_lease(w.account_id):
            w.leader = False
            await self._follow(w)
            if not w.shared and w.snapshot is not None:
                # Viewers here hold a state this instance minted alone while Redis was
                # unreachable, under an id the shared state has not reached: the polling
                # instance publishes again above it (told again each turn until it has).
                await self._coord.raise_floor(w.account_id, w.snapshot.version)
            return False
        if not w.leader:
            # Taking over: start from the shared state, so versions (the SSE ids every instance
            # and Last-Event-ID compare) go on from the last leader's, whatever our clock says.
            await self._follow(w)
        w.leader = True
        if not w.shared and w.snapshot is not None:
            # Published while Redis was unreachable: what Redis holds is older than what this
            # instance shows, and an instance that follows again would take it up.
            inputs = (w.polled, w.in_force(self._clock.now()))
            w.shared = await self._coord.publish(w.account_id, w.snapshot.to_wire(inputs))
        return True

    async def _room(self, plan: Plan) -> tuple[float | None, float | None]:
        """A regular poll's call counted before it is made (the time it was counted at), or when
        to try again: no room short of the reserve (it yields to known moments), or no call may
        be made at all (the app pauses). Known moments, and polls without a budget, pass."""
        if self._budget is None or plan.known:
            return None, None
        try:
            paid = await self._budget.take()
        except OverBudget as e:
            await self._rate_limited(RateLimited(e.retry_after, "budget"))
            return None, self.schedule.paused(plan, self.app_pause.until)
        if paid is None:
            self.counts["polls_yielded"] += 1
            return None, self.schedule.yielded(plan, self._clock.now())
        return paid, None

    async def _lost_grant(self, w: Watch, plan: Plan) -> float | None:
        """No Spotify grant: "reconnect required", unless the widget shows other sources or has
        no Spotify at all (the token manager refuses such a widget before calling Spotify)."""
        wake = self.schedule.lost_grant(plan, self._clock.now())
        if self.pulls is not None:
            w.pull.listed_at = None
            await self.pulls.refresh(w.account_id, w.pull)
        if self.pulls is None or (w.pull.spotify and not w.pull.kinds):
            await self._publish_everywhere(w, Snapshot.reconnect(w.next_version(self._clock.now())))
            return wake if self._ready is not None else None
        w.polled = None  # its other sources still show (the owner page asks to reconnect)
        if not w.pull.spotify:
            return None  # no Spotify to reconnect: the pull step goes on alone
        await self._publish_shown(w)
        return wake if self._ready is not None else None

    async def _ready_now(self, account_id: str) -> bool:
        assert self._ready is not None  # noqa: S101 - checked by the caller
        try:
            return await self._ready(account_id)
        except StoreError:
            return False

    async def _wanted(self, w: Watch) -> bool:
        """Watched here (viewers, recent requests) or, while leading, watched elsewhere."""
        now = self._clock.now()
        if w.watched(now, self.watch_ttl):
            if now - w.marked_at >= (self._coord.renew_every or 0) or w.marked_at == 0:
                w.marked_at = now
                await self._coord.mark_watched(w.account_id)
            return True
        return w.leader and await self._coord.is_watched(w.account_id)

    async def _sleep_until(self, when: float) -> None:
        """Sleep until the next poll, but wake in time to renew the lease."""
        seconds = when - self._clock.now()
        renew = self._coord.renew_every
        await self._clock.sleep(min(seconds, renew) if renew else seconds)

    async def _follow(self, w: Watch) -> None:
        """Another instance polls: take its latest state (pub/sub may have missed one)."""
        payload = await self._coord.latest(w.account_id)
        if payload is not None:
            self._received(w.account_id, payload)

    def _received(self, account_id: str, payload: str) -> None:
        """State from the polling instance (the coordinator's callback), for viewers here; to
        the polling instance, a push another instance received, which it takes on."""
        w = self._watches.get(account_id)
        if w is None:
            return
        try:
            snap = Snapshot.from_wire(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored malformed shared state")
            return
        w.floor = max(w.floor, snap.version)
        changed = self.pushes.share_inputs(w, snap)
        if w.leader:
            if snap.inputs is None:  # an earlier version's instance
                taken = self.pushes.taken_on(w, snap)
                if taken is not None:
                    self._publish_here(w, taken)
            elif changed and w.polled is not None:
                self._share_merge(w)
            return
        own = w.snapshot
        if own is None or snap.version > own.version:
            w.shared = True
            self._publish_here(w, snap, remote=True)
        elif not w.fresh.is_set():
            # Not later than what this instance holds (the same, or a state from before an
            # outage in which it minted its own): what it holds stands, for new viewers too.
            self._publish_here(w, own, remote=True)

    def _floor_raised(self, account_id: str, version: int) -> None:
        """Another instance's viewers hold ``version``, later than the shared state (it minted
        alone while Redis was unreachable): versions here go on above it, and the polling
        instance publishes what it shows again, so that every instance takes it up."""
        w = self._watches.get(account_id)
        if w is None:
            return
        w.floor = max(w.floor, version)
        if w.leader and (w.sharing is None or w.sharing.done()):
            w.sharing = asyncio.create_task(self._above(w), name=f"above:{w.account_id}")

    async def _above(self, w: Watch) -> None:
        """As the polling instance, publish what it shows again above :attr:`.Watch.floor`
        (nothing to do when it has since published above it)."""
        snap = w.snapshot
        if w.leader and snap is not None and snap.version <= w.floor:
            again = replace(snap, version=w.next_version(self._clock.now()))
            await self._publish_everywhere(w, again, again=True)

    def _share_merge(self, w: Watch) -> None:
        """The polling instance's merge after another instance changed the push, to every
        instance: the other's own merge may have crossed one of these polls on the way."""
        old = w.snapshot
        last = old.last_played if old is not None else None
        snap = w.merged(self._clock.now(), last)
        w.sharing = asyncio.create_task(
            self._publish_everywhere(w, snap), name=f"push-share:{w.account_id}"
        )

    async def _publish_everywhere(self, w: Watch, snap: Snapshot, *, again: bool = False) -> None:
        """Hand a snapshot to this instance's viewers and, when it changed (or ``again``: the
        same state under a later id), to every instance."""
        if self._publish_here(w, snap, remote=again):
            assert w.snapshot is not None  # noqa: S101 - just set by _publish_here
            inputs = (w.polled, w.in_force(self._clock.now()))
            w.shared = await self._coord.publish(w.account_id, w.snapshot.to_wire(inputs))

    async def _publish_stale_everywhere(self, w: Watch, retry_after: float | None = None) -> None:
        """Mark live data stale here and on every instance (nothing to do if it is not live)."""
        snap = w.snapshot
        if snap is not None and snap.status is not Status.LIVE:
            return
        stale = Snapshot(
            snap.playing if snap else None,
            Status.STALE,
            w.next_version(self._clock.now()),
            retry_after=retry_after if retry_after is not None else self.poll_seconds,
            notice=snap.notice if snap else None,
        )
        await self._publish_everywhere(w, stale)

    async def _last_played(self, w: Watch, playing: NowPlaying) -> PlayedItem | None:
        """While nothing plays, the last played track: looked up when playback has just ended
        and then at most every ``history_ttl`` seconds, so idle accounts stay cheap."""
        old = w.snapshot
        if playing.active:
            return None
        just_ended = bool(old and old.playing and old.playing.active)
        now = self._clock.now()
        if not just_ended and w.history_at is not None and now - w.history_at < self.history_ttl:
            return old.last_played if old else None
        w.history_at = now
        self.counts["history"] += 1
        try:
            if self.pulls is not None and not w.pull.spotify:  # what its pull sources told
                return await self.pulls.last_played(w.account_id, w.pull, self.reads)
            return await self.reads.last_played(w.account_id)
        except RateLimited as e:
            await self._rate_limited(e)
            return old.last_played if old else None
        except (SourceError, StoreError) as e:
            log.info("last played lookup failed (%s)", type(e).__name__)
            return old.last_played if old else None

    def refresh_history(self, account_id: str) -> None:
        """Look the last played track up again at the next poll (the owner changed the setting)."""
        w = self._watches.get(account_id)
        if w is not None:
            w.history_at = None

    async def _rate_limited(self, error: RateLimited) -> None:
        """A read met a 429, whichever it was: the app pauses (:meth:`.AppPause.hit`, which tells
        the owner) and every viewer here and elsewhere is told data is stale until it ends."""
        await self.app_pause.hit(error.retry_after, error.reason)
        for w in list(self._watches.values()):
            await self._publish_stale_everywhere(
                w, retry_after=max(0.0, self.app_pause.until - self._clock.now())
            )

    def _publish_here(self, w: Watch, snap: Snapshot, *, remote: bool = False) -> bool:
        """Hand a snapshot to this instance's viewers, if it changed anything (``remote``: the
        leading instance decided it did); whether it did. An unchanged one keeps the version."""
        old = w.snapshot
        changed = remote or old is None or old.differs(snap, self._clock.now())
        if not changed:
            assert old is not None  # noqa: S101 - narrowed by `changed`
            snap = replace(snap, version=old.version)
        w.snapshot = snap
        w.fresh.set()
        if changed:
            self.counts["published"] += 1
            w.channel.publish(snap)
        return changed
