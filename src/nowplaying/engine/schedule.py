"""The polling policy: given what a poll saw, when the next one is.

One :class:`Schedule` (the app's settings) serves every account; each poller keeps its own
:class:`Plan` (what it has met so far). The live engine asks the schedule after every poll and
sleeps until the time it answers; nothing here waits or calls anyone.

With a call budget (:mod:`nowplaying.sources.budget`) the live engine hands each plan its ``share``
before asking: the seconds between polls that keep every polled account within the budget.

- **Playing**: just after the track's predicted end (``end_margin`` late), or at the next
  regular poll to catch skips and pauses, whichever comes first. The regular poll is the
  budget's share clamped to [``floor``, ``ceiling``]; without a budget, every ``poll_seconds``.
- **Nothing playing**: with a budget, the same share: someone is watching (a poller runs only
  then), so playback starting is seen as soon as a skip would be. Without one (the fixed
  schedule), backing off by 1.5x per idle poll, up to ``idle_max``.
- **A failure**: exponential backoff from ``poll_seconds`` up to ``backoff_max``, jittered.
- **The grant is gone**: a store check every ``reconnect_check`` seconds, no Spotify call.
- **The app-wide pause** (a 429): nothing before it ends.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from nowplaying.models import NowPlaying

__all__ = ["Plan", "Schedule"]


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
        """A poll answered: the next one at the track's end, the poll interval, or idle backoff."""
        plan.failures = 0
        plan.idle = 0 if playing.active else plan.idle + 1
        plan.next_poll = now + self.delay(playing, plan.idle, plan.share)
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
            every = min(self.ceiling, max(self.floor, share))
        elif not playing.active:
            return min(self.idle_max, self.poll_seconds * (1.5 ** max(0, idle - 1)))
        else:
            every = self.poll_seconds
        remaining = playing.remaining_ms
        if playing.active and playing.is_playing and remaining is not None:
            return min(every, remaining / 1000 + self.end_margin)
        return every

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failures in a row (jittered)."""
        cap = min(self.backoff_max, self.poll_seconds * 2.0 ** (failures - 1))
        return cap * self._rng.uniform(0.5, 1.0)
