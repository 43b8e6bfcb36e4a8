"""The push in force on each watched widget (:class:`Pushes`): taken from a player, taken on from
another instance's shared state, and ended at its ``expires_at``.

A push reaches viewers at once and merges with the polled source (:mod:`.merge`); with several
instances, the state the polling instance shares carries the push it merged, so a push any
instance received, and a finished listen that ends it, hold on every one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

from nowplaying.clock import Clock
from nowplaying.engine.snapshot import Snapshot
from nowplaying.engine.watch import Watch
from nowplaying.models import SourceKind
from nowplaying.sources.push import Push, pushed

__all__ = ["Pushes"]

Publish = Callable[[Watch, Snapshot], Awaitable[None]]
"""Hand a snapshot to this instance's viewers and, when it changed, to every instance."""


class Pushes:
    """Keeps each watch's push: :attr:`.Watch.pushed` and the task that ends it."""

    def __init__(self, clock: Clock, publish: Publish) -> None:
        self._clock = clock
        self._publish = publish

    def expire_later(self, w: Watch, push: Push) -> None:
        """End ``push`` at its ``expires_at`` (the merged state is published then), unless
        another has taken its place."""
        if w.expiry is not None:
            w.expiry.cancel()

        async def expire() -> None:
            await self._clock.sleep(max(0.0, push.expires_at - self._clock.now()))
            if w.pushed is push:
                w.pushed = None
                old = w.snapshot
                last = old.last_played if old else None
                await self._publish(w, w.merged(self._clock.now(), last))

        w.expiry = asyncio.create_task(expire(), name=f"push-expiry:{w.account_id}")

    def taken_on(self, w: Watch, snap: Snapshot) -> Snapshot | None:
        """Another instance received a push and shared the state it made: keep it in force here
        (this instance polls, and would otherwise publish over it); the state to show the
        viewers here, or None when there is nothing to take on."""
        playing = snap.playing
        if playing is None or playing.source is not SourceKind.PUSH:
            return None
        if w.pushed is not None and w.pushed.playing == playing:
            return None  # ours, or already taken on
        w.pushed = pushed(playing)
        self.expire_later(w, w.pushed)
        old = w.snapshot
        last = old.last_played if old is not None else None
        return replace(w.merged(self._clock.now(), last), version=snap.version)

    def share_inputs(self, w: Watch, snap: Snapshot) -> bool:
        """Take what another instance merged ``snap`` from: the push in force there is in force
        here (or none is), so a finished listen received by any instance ends the push on
        every one; a follower also keeps the polled state, to merge a push it receives as the
        polling instance would. Whether the push in force here changed."""
        if snap.inputs is None:
            return False
        polled, playing = snap.inputs
        if not w.leader:
            w.polled = polled
        if playing is None:
            if w.pushed is None:
                return False
            if w.expiry is not None:
                w.expiry.cancel()
            w.pushed = None
            return True
        if w.pushed is not None and w.pushed.playing == playing:
            return False
        w.pushed = pushed(playing)
        if w.leader:  # the polling instance runs the expiry; followers hear of it
            self.expire_later(w, w.pushed)
        return True
