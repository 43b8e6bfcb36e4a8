"""Fan-out: one account's published snapshots, handed to every viewer at the cost of one.

A viewer remembers the generation it has read, so "is there something new" is a comparison, and
waiting is one future of its own, resolved with all the others by the next publish: no queue,
task or per-viewer work to publish beyond that. A slow viewer misses only history.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nowplaying.engine.snapshot import Snapshot

__all__ = ["Channel", "Subscription", "wake"]


class Channel:
    """One account's latest published snapshot and the futures waiting for the next one."""

    __slots__ = ("generation", "latest", "subscribers", "waiters")

    def __init__(self) -> None:
        self.latest: Snapshot | None = None
        self.generation = 0
        self.subscribers: set[Subscription] = set()
        self.waiters: set[asyncio.Future[None]] = set()

    def publish(self, snap: Snapshot) -> None:
        """Make ``snap`` the latest and wake everyone waiting (once each)."""
        self.latest = snap
        self.generation += 1
        waiters, self.waiters = self.waiters, set()
        for future in waiters:
            wake(future)

    def subscribe(self, current: Snapshot | None) -> Subscription:
        """A new viewer; ``current`` (what is known now, if anything) is its first snapshot."""
        sub = Subscription(self, current)
        self.subscribers.add(sub)
        return sub

    def __len__(self) -> int:
        return len(self.subscribers)


class Subscription:
    """One viewer of a channel, read like a one-slot queue where the latest state wins."""

    __slots__ = ("_channel", "_first", "_read")

    def __init__(self, channel: Channel, first: Snapshot | None) -> None:
        self._channel = channel
        self._read = channel.generation
        self._first = first

    def empty(self) -> bool:
        """Nothing new since the last read."""
        return self._first is None and self._read == self._channel.generation

    def get_nowait(self) -> Snapshot:
        """The latest state not yet read; raises ``asyncio.QueueEmpty`` when there is none."""
        channel = self._channel
        if self._read != channel.generation and channel.latest is not None:
            self._read, self._first = channel.generation, None
            return channel.latest
        first, self._first = self._first, None
        if first is None:
            raise asyncio.QueueEmpty
        return first

    async def get(self) -> Snapshot:
        """The latest state not yet read, waiting for the next publish if there is none."""
        while self.empty():
            future = asyncio.get_running_loop().create_future()
            self.wake_on_change(future)
            try:
                await future
            finally:
                self._channel.waiters.discard(future)
        return self.get_nowait()

    def wake_on_change(self, future: asyncio.Future[None]) -> None:
        """Resolve ``future`` at the next publish (at once if something is unread already)."""
        if self.empty():
            self._channel.waiters.add(future)
        else:
            wake(future)

    def forget(self, future: asyncio.Future[None]) -> None:
        """``future`` is done with (woken by something else): drop it from the channel."""
        self._channel.waiters.discard(future)

    def close(self) -> None:
        self._channel.subscribers.discard(self)


def wake(future: asyncio.Future[None]) -> None:
    """Resolve a waiter unless it is already done (woken by something else, or cancelled)."""
    if not future.done():
        future.set_result(None)
