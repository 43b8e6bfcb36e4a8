"""A widget's pull sources (Last.fm, ListenBrainz): which it has, and when each is read.

The widget's one poller (:class:`~nowplaying.engine.live.LiveHub`) calls :meth:`Pulls.step` on
each turn, so a pull source is read only while someone watches, by the instance holding the
widget's lease. Each source has its own call budget (app-wide, shared through the coordinator's
ledger) and a :class:`~nowplaying.engine.schedule.Schedule` whose floor is its seconds per
account and whose share is that budget's, so however many widgets read a source, together they
keep within its rate. No pull answer tells progress, so none of their polls is a known moment;
the time a track was first seen stands for its start, for the merge. A private profile
(Last.fm's error 17) becomes the widget's notice, a 429 holds only that source's budget.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from nowplaying.clock import Clock
from nowplaying.engine.merge import same_track
from nowplaying.engine.reads import Reads
from nowplaying.engine.schedule import Plan, Schedule
from nowplaying.models import AccountStatus, Notice, NowPlaying, PlayedItem, SourceKind
from nowplaying.sources.base import RateLimited, ReconnectRequired, Refused, SourceError
from nowplaying.sources.budget import CallBudget, OverBudget, regular_poll
from nowplaying.sources.pull import LinkCache
from nowplaying.store import StoreError

__all__ = ["Pull", "PullState", "Pulls"]

log = logging.getLogger(__name__)

PRIVATE = "private"
"""The refusal shown to viewers as the widget's notice (the others are for the owner only)."""


@dataclass(frozen=True)
class Pull:
    """One pull source of the app: its reads, its budget, its schedule."""

    reads: Reads
    budget: CallBudget
    schedule: Schedule

    @property
    def kind(self) -> SourceKind:
        return self.reads.kind


@dataclass
class PullState:
    """What one widget's poller knows of its sources."""

    spotify: bool = True
    """The widget has a Spotify source (until its sources are listed, as before there were
    others)."""
    kinds: tuple[SourceKind, ...] = ()
    """Its pull sources that can be read."""
    listed_at: float | None = None
    plans: dict[SourceKind, Plan] = field(default_factory=dict)
    states: dict[SourceKind, NowPlaying] = field(default_factory=dict)
    """Each pull source's last answer (a track's timestamp: when it was first seen)."""
    notices: dict[SourceKind, Notice] = field(default_factory=dict)

    @property
    def notice(self) -> Notice | None:
        """What viewers are told of a source kept private, if one is."""
        return next(iter(self.notices.values()), None)


class Pulls:
    """The app's pull sources, read for each watched widget (see the module docstring)."""

    def __init__(
        self,
        pulls: Iterable[Pull],
        links: LinkCache,
        clock: Clock,
        *,
        relist: float = 300.0,
        refused_wait: float = 60.0,
    ) -> None:
        self._pulls = {p.kind: p for p in pulls}
        self._links = links
        self._clock = clock
        self.relist = relist
        """A widget's sources are listed when its poller starts, when it restarts (a source
        linked or unlinked here) and this often (one linked on another instance)."""
        self.refused_wait = refused_wait
        """A source that refused a widget is asked again this much later."""
        self.counts: Counter[str] = Counter()
        """Reads made per source kind (``lastfm``), and ``<kind>_yielded`` put off for budget."""

    def budgets(self) -> dict[SourceKind, CallBudget]:
        return {kind: p.budget for kind, p in self._pulls.items()}

    def due(self, st: PullState) -> bool:
        """Whether the widget's sources are to be listed (never yet, or :attr:`relist` ago)."""
        return st.listed_at is None or self._clock.now() - st.listed_at >= self.relist

    async def refresh(self, account_id: str, st: PullState) -> None:
        """List the widget's sources, when :meth:`due`."""
        now = self._clock.now()
        if not self.due(st):
            return
        try:
            links = await self._links.refresh(account_id)
        except StoreError as e:
            log.info("could not list a widget's sources (%s)", type(e).__name__)
            return
        st.listed_at = now
        st.spotify = any(link.kind is SourceKind.SPOTIFY for link in links)
        st.kinds = tuple(
            link.kind
            for link in links
            if link.kind in self._pulls
            and link.status is AccountStatus.ACTIVE
            and not link.key_missing
        )
        for gone in set(st.states) | set(st.notices) | set(st.plans):
            if gone not in st.kinds:
                st.states.pop(gone, None)
                st.notices.pop(gone, None)
                st.plans.pop(gone, None)

    async def step(self, account_id: str, st: PullState) -> float | None:
        """Read each pull source of the widget that is due: when the next one is due (None: the
        widget has none)."""
        due: list[float] = []
        for kind in st.kinds:
            plan = st.plans.setdefault(kind, Plan())
            if self._clock.now() >= plan.next_poll:
                await self._read(self._pulls[kind], account_id, st, plan)
            due.append(plan.next_poll)
        return min(due) if due else None

    async def _read(self, pull: Pull, account_id: str, st: PullState, plan: Plan) -> None:
        kind, now = pull.kind, self._clock.now()
        try:
            paid = await pull.budget.take()  # the read's call counted now, or no room
        except OverBudget as e:  # held (a 29, a 429, the headers): every widget waits
            plan.next_poll = now + e.retry_after
            return
        if paid is None:
            self.counts[f"{kind}_yielded"] += 1
            pull.schedule.yielded(plan, now)
            return
        self.counts[kind] += 1
        try:
            with regular_poll(paid):
                playing = await pull.reads.now(account_id)
        except Refused as e:
            log.info("%s refused a widget (%s)", kind, e.kind)
            st.states.pop(kind, None)
            if e.kind == PRIVATE:
                st.notices[kind] = Notice(kind, PRIVATE)
            plan.next_poll = now + self.refused_wait
            return
        except RateLimited as e:  # the source held its budget: the other widgets wait too
            plan.next_poll = now + e.retry_after
            return
        except ReconnectRequired:  # unlinked meanwhile: list the sources again
            st.states.pop(kind, None)
            st.listed_at = None
            plan.next_poll = now + self.relist
            return
        except (SourceError, StoreError) as e:
            log.info("%s read failed (%s); backing off", kind, type(e).__name__)
            pull.schedule.failed(plan, now)
            return
        st.notices.pop(kind, None)
        st.states[kind] = kept_start(st.states.get(kind), playing)
        share = await pull.budget.interval(account_id)
        plan.share, plan.slot, plan.slots = share.every, share.slot, share.slots
        pull.schedule.played(plan, playing, self._clock.now())

    async def last_played(self, account_id: str, st: PullState, owner: Reads) -> PlayedItem | None:
        """The newest last-played track the widget's pull sources told with their answers, when
        the ``owner`` shows it."""
        if not await owner.shows_history(account_id):
            return None
        found: list[PlayedItem] = []
        for kind in st.kinds:
            found += await self._pulls[kind].reads.recently_played(account_id, 1)
        return max(found, key=lambda p: p.played_at, default=None)

    async def idle(self, account_id: str) -> None:
        """The widget is no longer polled here: its share of each budget goes to the others."""
        self._links.forget(account_id)
        for pull in self._pulls.values():
            await pull.budget.idle(account_id)


def kept_start(old: NowPlaying | None, new: NowPlaying) -> NowPlaying:
    """``new``, dated when its track was first seen playing (a source without progress says
    nothing of when it started; the merge compares starts)."""
    if (
        old is not None
        and old.active
        and new.active
        and old.is_playing == new.is_playing
        and same_track(old, new)
    ):
        return replace(new, timestamp=old.timestamp)
    return new
