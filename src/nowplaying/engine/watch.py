"""One watched widget in the live engine (:class:`Watch`): what the hub keeps per widget."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from nowplaying.engine.fanout import Channel
from nowplaying.engine.merge import merge
from nowplaying.engine.pulls import PullState
from nowplaying.engine.schedule import Plan
from nowplaying.engine.snapshot import Snapshot, Status
from nowplaying.models import NowPlaying, PlayedItem
from nowplaying.sources.push import Push

__all__ = ["Watch"]


@dataclass(eq=False)
class Watch:
    """One watched widget: its state, its viewers, its poller, and what its sources said."""

    account_id: str
    snapshot: Snapshot | None = None
    channel: Channel = field(default_factory=Channel)
    """The published snapshots and their viewers."""
    last_request: float = 0.0
    task: asyncio.Task[None] | None = None
    fresh: asyncio.Event = field(default_factory=asyncio.Event)
    history_at: float | None = None
    leader: bool = False
    shared: bool = True
    """Whether the shared state has caught up with what this instance shows (not after it
    published while Redis was unreachable: as the leader it shares that again once Redis
    answers, as a follower it raises the leader's :attr:`floor` until a later state arrives)."""
    floor: int = 0
    """The highest version another instance is known to have shown its viewers: the next one
    minted here is above it."""
    marked_at: float = 0.0
    polled: NowPlaying | None = None
    """The poller's last read of the widget's polled source, before pushes are merged in."""
    pushed: Push | None = None
    """The last push still in force (until its ``expires_at``)."""
    expiry: asyncio.Task[None] | None = None
    sharing: asyncio.Task[None] | None = None
    """The polling instance's merge of a push another instance changed, on its way out."""
    pull: PullState = field(default_factory=PullState)
    """Its sources, and what its pull sources (Last.fm, ListenBrainz) last said."""
    listing: asyncio.Task[None] | None = None
    """Its sources being listed from the store, beside the poller."""
    plan: Plan | None = None
    """Its poller's schedule (kept when the poller is started again for a change of sources)."""

    def watched(self, now: float, ttl: float) -> bool:
        return bool(self.channel) or now - self.last_request < ttl

    def in_force(self, now: float) -> NowPlaying | None:
        """The pushed state, while its push is in force."""
        return self.pushed.playing if self.pushed and now < self.pushed.expires_at else None

    def shown(self, now: float) -> NowPlaying | None:
        """What viewers see: the polled sources' states merged with a push still in force."""
        return merge([self.polled, *self.pull.states.values(), self.in_force(now)], now)

    def next_version(self, now: float) -> int:
        """The next SSE id: above the last one here and above :attr:`floor`, and never below
        the clock in ms. Ids so keep growing per widget across restarts (a new process starts
        at the clock), lease moves (a new leader goes on from the shared state) and Redis
        outages (each instance mints its own then: the clock keeps theirs in step, and an
        instance left holding a later id than the shared state raises the floor of the one
        that polls). A reused or lower id would make a viewer's Last-Event-ID skip a change."""
        last = self.snapshot.version if self.snapshot else 0
        return max(last + 1, self.floor + 1, int(now * 1000))

    def live(self, now: float, shown: NowPlaying | None, last: PlayedItem | None) -> Snapshot:
        """A live snapshot of ``shown`` (with the sources' notice), at the next version."""
        return Snapshot(
            shown, Status.LIVE, self.next_version(now), last_played=last, notice=self.pull.notice
        )

    def merged(self, now: float, last: PlayedItem | None) -> Snapshot:
        """A live snapshot of what the widget shows now (:meth:`shown`)."""
        return self.live(now, self.shown(now), last)
