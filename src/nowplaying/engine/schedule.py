"""The polling policy: given what a poll saw, when the next one is (nothing here waits or calls).

A playing track is polled just after its predicted end, or sooner at the regular poll that
catches skips; the regular interval is the call budget's share, clamped to [``floor``,
``ceiling``], also while nothing plays (a poller runs only while someone watches; without a
budget, ``poll_seconds``, backing off while idle). With a budget the regular polls keep to a grid
shared by every polled account: account ``slot`` of ``slots`` at ``(k + slot / slots) x every``
of the clock, so the accounts' polls are spread evenly (no two meet and wait for room) and the
longest gap between two polls of one account is the interval. The poll at a
track's end and one re-check after a skip are *known* moments (:attr:`Plan.known`) that may use
the budget's reserve; a regular poll finding no room is not made (:meth:`Schedule.yielded`), so
none holds up a known one. Failures back off exponentially, jittered; a lost grant is re-checked
in the store only; nothing runs before the app-wide pause ends.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from nowplaying.models import NowPlaying

__all__ = ["YIELD_SECONDS", "Plan", "Schedule"]

YIELD_SECONDS = 0.25
"""A regular poll that found no room in the budget is tried again this much later."""


def _track(playing: NowPlaying) -> str | None:
    item = playing.item if playing.active else None
    return None if item is None else (item.uri or item.title)


@dataclass(slots=True)
class Plan:
    """One poller's schedule: when to poll next, and what it has met so far."""

    next_poll: float = 0.0
    failures: int = 0
    idle: int = 0
    reconnect: bool = False
    """The grant is gone: check the store instead of polling Spotify."""
    share: float | None = None
    """Seconds between polls the call budget allows this account now (None: no budget)."""
    slot: int = 0
    slots: int = 1
    """The account's place on the shared grid of regular polls (:class:`.budget.Share`)."""
    spare: bool = True
    """The budget's reserve has room for a re-check after a skip."""
    known: bool = False
    """The next poll is at a moment the schedule knows (a predicted track end, the re-check
    after a skip), which the budget holds room for."""
    end_poll: float | None = None
    """When the poll at the playing track's predicted end is due (None: no end predicted)."""
    track: str | None = None
    """The item the last poll saw playing (to tell a skip from a natural end)."""


class Schedule:
    """When to poll an account next, from what its last poll saw (see the module docstring)."""

    def __init__(
        self,
        *,
        poll_seconds: float = 5.0,
        idle_max: float = 30.0,
        backoff_max: float = 30.0,
        end_margin: float = 0.3,
        reconnect_check: float = 5.0,
        rng: random.Random | None = None,
        floor: float = 1.0,
        ceiling: float = 30.0,
    ) -> None:
        self.poll_seconds = poll_seconds
        self.floor = floor
        """With a budget: never two regular polls of one account closer than this."""
        self.ceiling = ceiling
        """With a budget: never longer than this between polls of a watched account (if the
        budget cannot afford even that, the calls wait for room at the budget)."""
        self.idle_max = idle_max
        self.backoff_max = backoff_max
        self.end_margin = end_margin
        self.reconnect_check = reconnect_check
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets

    def played(self, plan: Plan, playing: NowPlaying, now: float) -> float:
        """A poll answered: the next one at the track's end, the re-check after a skip, the poll
        interval, or idle backoff."""
        plan.failures = 0
        plan.idle = 0 if playing.active else plan.idle + 1
        track = _track(playing)
        skipped = (
            plan.track is not None
            and track != plan.track
            and plan.end_poll is not None
            and now < plan.end_poll - self.end_margin
        )
        plan.track = track
        end = self._to_end(playing)
        plan.end_poll = None if end is None else now + end
        if plan.share is None:
            wait = self.delay(playing, plan.idle)
        else:
            regular = self.on_grid(plan, now) - now
            wait = regular if end is None else min(regular, end)
        plan.known = end is not None and end <= wait
        if skipped and plan.share is not None and plan.spare and self.floor < wait:
            wait, plan.known = self.floor, True
        plan.next_poll = now + wait
        return plan.next_poll

    def on_grid(self, plan: Plan, now: float) -> float:
        """The account's next regular poll on the shared grid: the first of its grid points at
        least half an interval after ``now`` (a poll that came a little late, or a known moment
        just made, is not followed by another at once)."""
        assert plan.share is not None  # noqa: S101 - only with a budget
        every = self.every(plan.share)
        offset = every * (plan.slot % max(1, plan.slots)) / max(1, plan.slots)
        return offset + every * math.ceil((now + every / 2 - offset) / every)

    def yielded(self, plan: Plan, now: float) -> float:
        """A regular poll found no room in the budget and was not made: try again after
        :data:`YIELD_SECONDS`, or at the predicted end if that comes first."""
        plan.next_poll = now + YIELD_SECONDS
        if plan.end_poll is not None and plan.end_poll <= plan.next_poll:
            plan.next_poll, plan.known = max(now, plan.end_poll), True
        return plan.next_poll

    def failed(self, plan: Plan, now: float) -> float:
        """A poll failed (Spotify, the store, or something unexpected): back off."""
        plan.failures += 1
        plan.next_poll = now + self.backoff(plan.failures)
        return plan.next_poll

    def lost_grant(self, plan: Plan, now: float) -> float:
        """The grant is gone (or still gone): check the store again later."""
        plan.reconnect = True
        plan.next_poll = now + self.reconnect_check
        return plan.next_poll

    def regained(self, plan: Plan) -> None:
        """The store holds a grant again: poll Spotify now."""
        plan.reconnect = False

    def paused(self, plan: Plan, until: float) -> float:
        """The app-wide pause: no poll before ``until``."""
        plan.next_poll = max(plan.next_poll, until)
        return plan.next_poll

    def delay(self, playing: NowPlaying, idle: int, share: float | None = None) -> float:
        """Seconds to the next poll after seeing ``playing`` (``idle`` idle polls in a row),
        with the budget's ``share`` (None: the fixed schedule)."""
        if share is not None:
            every = self.every(share)
        elif not playing.active:
            return min(self.idle_max, self.poll_seconds * (1.5 ** max(0, idle - 1)))
        else:
            every = self.poll_seconds
        end = self._to_end(playing)
        return every if end is None else min(every, end)

    def every(self, share: float) -> float:
        """The regular interval for the budget's ``share``: clamped to [floor, ceiling]."""
        return min(self.ceiling, max(self.floor, share))

    def _to_end(self, playing: NowPlaying) -> float | None:
        """Seconds to the poll at the playing track's predicted end (None: nothing predicted)."""
        remaining = playing.remaining_ms
        if playing.active and playing.is_playing and remaining is not None:
            return remaining / 1000 + self.end_margin
        return None

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failures in a row (jittered)."""
        cap = min(self.backoff_max, self.poll_seconds * 2.0 ** (failures - 1))
        return cap * self._rng.uniform(0.5, 1.0)
