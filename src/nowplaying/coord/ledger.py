"""Where the call budget counts calls: in this process (:class:`LocalLedger`) or in Redis."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

DAY = 86400.0
LEDGER = "budget"
"""The name of Spotify's call budget ledger (each pull source's budget has its own name)."""
ACTIVE_TTL = 60.0
"""An account counts as polled (for the fair share) this long after its last poll."""


@dataclass(frozen=True, slots=True)
class Learned:
    """What the budget learned from Spotify's 429s (None: nothing yet)."""

    cut_to: float | None = None
    """The window limit right after the last window 429."""
    cut_at: float = 0.0
    """When that 429 came (clock seconds)."""
    per_day: int | None = None
    """The daily budget after a ``QUOTA_EXCEEDED``."""
    blocked_until: float = 0.0
    """No call before this (a ``QUOTA_EXCEEDED``'s Retry-After)."""


@dataclass(frozen=True, slots=True)
class Reading:
    """What a poller reads from the ledger after each poll (one round trip in Redis)."""

    learned: Learned
    in_window: int
    """Calls counted in the window."""
    regular: int
    """Of those, the regular polls' (the rest: known moments, token refreshes, look-ups)."""
    today: int
    polled: tuple[str, ...]
    """The accounts polled (marked within ``ACTIVE_TTL``), sorted: an account's place here
    is its slot on the shared poll grid."""
    accounts: int = 0
    """How many accounts share the budget: ``len(polled)``, or more while an instance counts
    alone (as if every instance polled as many)."""

    def __post_init__(self) -> None:
        if not self.accounts:
            object.__setattr__(self, "accounts", len(self.polled))


class Ledger(Protocol):
    """Where calls are counted: one process's memory, or Redis for every instance."""

    async def try_spend(
        self, now: float, window: float, per_window: int, per_day: int, *, regular: bool = False
    ) -> float:
        """Count one call at ``now`` if both limits have room (0.0); else count nothing and
        return how many seconds until there is room. ``regular``: a regular poll's call."""
        ...

    async def used(self, now: float, window: float) -> tuple[int, int]:
        """Calls counted in the window ending ``now``, and today (UTC)."""
        ...

    async def learned(self) -> Learned: ...
    async def learn(self, learned: Learned) -> None:
        """Store what was learned (the caller has merged it with :meth:`learned`)."""
        ...

    async def mark_active(self, account_id: str, now: float, window: float) -> Reading:
        """Note that ``account_id`` is polled; the ledger as it stands (``window``: its length)."""
        ...

    async def active(self, now: float) -> int:
        """How many accounts are polled (marked within ``ACTIVE_TTL``)."""
        ...

    async def forget_active(self, account_id: str) -> None: ...


def seconds_to_midnight(now: float) -> float:
    """Until the next UTC day, when the daily count starts again."""
    return (math.floor(now / DAY) + 1) * DAY - now


class LocalLedger:
    """The ledger of one process."""

    def __init__(self) -> None:
        self._calls: deque[float] = deque()
        self._regular: deque[float] = deque()
        self._day = (0, 0)
        self._learned = Learned()
        self._active: dict[str, float] = {}

    async def try_spend(
        self, now: float, window: float, per_window: int, per_day: int, *, regular: bool = False
    ) -> float:
        calls = self._calls
        for times in (calls, self._regular):
            while times and times[0] <= now - window:
                times.popleft()
        if per_window <= 0:
            return window
        if len(calls) >= per_window:
            # Room comes when all but per_window - 1 of the counted calls have left the window.
            return max(1e-3, calls[len(calls) - per_window] + window - now)
        day = math.floor(now / DAY)
        used_today = self._day[1] if self._day[0] == day else 0
        if used_today >= per_day:
            return seconds_to_midnight(now)
        calls.append(now)
        if regular:
            self._regular.append(now)
        self._day = (day, used_today + 1)
        return 0.0

    def note(self, now: float, window: float, *, regular: bool = False) -> None:
        """Count a call the shared ledger took, so this process's own calls in the ``window``
        ending ``now`` are known when it has to count alone."""
        for times in (self._calls, self._regular):
            while times and times[0] <= now - window:
                times.popleft()
        day = math.floor(now / DAY)
        self._calls.append(now)
        if regular:
            self._regular.append(now)
        self._day = (day, (self._day[1] if self._day[0] == day else 0) + 1)

    async def used(self, now: float, window: float) -> tuple[int, int]:
        in_window = sum(1 for t in self._calls if t > now - window)
        today = self._day[1] if self._day[0] == math.floor(now / DAY) else 0
        return in_window, today

    async def learned(self) -> Learned:
        return self._learned

    async def learn(self, learned: Learned) -> None:
        self._learned = learned

    async def mark_active(self, account_id: str, now: float, window: float) -> Reading:
        self._active[account_id] = now
        await self.active(now)
        in_window, today = await self.used(now, window)
        regular = sum(1 for t in self._regular if t > now - window)
        return Reading(self._learned, in_window, regular, today, tuple(sorted(self._active)))

    async def active(self, now: float) -> int:
        for key, at in list(self._active.items()):
            if at <= now - ACTIVE_TTL:
                del self._active[key]
        return len(self._active)

    async def forget_active(self, account_id: str) -> None:
        self._active.pop(account_id, None)
