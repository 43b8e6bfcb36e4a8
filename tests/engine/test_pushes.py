"""The push in force on a watch: taken on from another instance's state, shared, and ended at its
``expires_at`` on the fake clock."""

from __future__ import annotations

import pytest

from nowplaying.clock import FakeClock
from nowplaying.engine.pushes import Pushes
from nowplaying.engine.snapshot import Snapshot, Status
from nowplaying.engine.watch import Watch
from nowplaying.models import Item, Kind, NowPlaying, SourceKind

pytestmark = pytest.mark.anyio


def playing(title: str, at: float, source: SourceKind = SourceKind.PUSH) -> NowPlaying:
    """A 20 s track started at ``at``."""
    item = Item(Kind.TRACK, title, ("Artist",), None, None, None, 20_000)
    return NowPlaying(True, Kind.TRACK, item, None, at, source)


def in_force(w: Watch) -> bool:
    """Whether a push is in force on ``w`` (read afresh: the clock or a call may have ended it)."""
    return w.pushed is not None


def kept(clock: FakeClock) -> tuple[Pushes, list[Snapshot]]:
    published: list[Snapshot] = []

    async def publish(w: Watch, snap: Snapshot) -> None:
        w.snapshot = snap
        published.append(snap)

    return Pushes(clock, publish), published


async def test_a_push_taken_on_from_another_instance_shows_and_ends_at_its_expiry(
    clock: FakeClock,
) -> None:
    pushes, published = kept(clock)
    w = Watch("acct", leader=True)
    theirs = Snapshot(playing("Song", clock.now()), Status.LIVE, 7)
    shown = pushes.taken_on(w, theirs)
    assert shown is not None and shown.version == 7
    assert shown.playing is not None and shown.playing.item is not None
    assert shown.playing.item.title == "Song"
    assert pushes.taken_on(w, theirs) is None  # already taken on
    w.snapshot = shown
    await clock.advance(19.9, step=0.1)
    assert published == [] and in_force(w)
    await clock.advance(0.2, step=0.1)
    assert not in_force(w)
    assert [s.playing for s in published] == [None]  # the polled source says nothing


async def test_a_polled_state_is_not_taken_on(clock: FakeClock) -> None:
    pushes, _ = kept(clock)
    w = Watch("acct", leader=True)
    polled = Snapshot(playing("Song", clock.now(), SourceKind.SPOTIFY), Status.LIVE, 3)
    assert pushes.taken_on(w, polled) is None and w.pushed is None


async def test_shared_inputs_carry_the_push_and_its_end_to_every_instance(
    clock: FakeClock,
) -> None:
    pushes, _ = kept(clock)
    follower = Watch("acct")
    song = playing("Song", clock.now())
    polled = playing("Polled", clock.now(), SourceKind.SPOTIFY)
    state = Snapshot(song, Status.LIVE, 5, inputs=(polled, song))
    assert pushes.share_inputs(follower, state) is True
    assert follower.polled == polled and in_force(follower)
    assert follower.expiry is None  # the polling instance runs the expiry
    assert pushes.share_inputs(follower, state) is False  # nothing new
    ended = Snapshot(polled, Status.LIVE, 6, inputs=(polled, None))
    assert pushes.share_inputs(follower, ended) is True and not in_force(follower)
    assert pushes.share_inputs(follower, Snapshot(polled, Status.LIVE, 7)) is False  # no inputs
