"""Fan-out at the cost of one: a publish resolves one future per waiting viewer and nothing
else per viewer (no queue, no task); a slow viewer reads only the latest state."""

from __future__ import annotations

import asyncio

import pytest

from nowplaying.engine.fanout import Channel
from nowplaying.engine.live import Snapshot, Status

pytestmark = pytest.mark.anyio


def _snap(version: int) -> Snapshot:
    return Snapshot(None, Status.STALE, version)


async def test_a_publish_wakes_every_waiting_viewer_once() -> None:
    """1,000 viewers waiting: one publish hands each the new state; no waiter is left over."""
    channel = Channel()
    subs = [channel.subscribe(None) for _ in range(1000)]
    gets = [asyncio.ensure_future(s.get()) for s in subs]
    await asyncio.sleep(0)
    assert len(channel.waiters) == 1000  # one future each
    assert not any(g.done() for g in gets)
    snap = _snap(1)
    channel.publish(snap)
    assert channel.waiters == set()
    assert all(got is snap for got in await asyncio.gather(*gets))
    assert all(s.empty() for s in subs)
    channel.publish(_snap(2))  # nobody waits: nothing to wake, each still sees it
    assert [s.get_nowait().version for s in subs[:3]] == [2, 2, 2]


async def test_a_slow_viewer_reads_only_the_latest_state() -> None:
    """The first state on subscribing, then the latest: changes it was too slow for are gone."""
    channel = Channel()
    sub = channel.subscribe(_snap(1))
    assert sub.get_nowait().version == 1
    assert sub.empty()
    with pytest.raises(asyncio.QueueEmpty):
        sub.get_nowait()
    for version in (2, 3, 4):
        channel.publish(_snap(version))
    assert sub.get_nowait().version == 4
    assert sub.empty()
    sub.close()
    assert len(channel) == 0
