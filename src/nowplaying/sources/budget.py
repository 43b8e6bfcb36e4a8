"""The app's call budget: how many upstream calls it may make per rolling 30 s and per day.

Spotify rations calls per app (``spotify-contract.md`` §6): a window of unpublished size and a
development-mode daily quota. Every call spends before it is sent, and nothing spends past the
budget: a call waits on the clock for room, or fails at once with :class:`OverBudget` when the day
is spent or the upstream said to wait longer. The counts and what was learned live in a ledger,
local or in Redis, so every instance spends from, and learns from, one budget.

The limit is learned as TCP learns its window (AIMD): a 429 cuts it to ``decrease`` times what
the window held, each window without one adds ``increase`` back, up to the configured size. A
reserve is kept for the moments the schedule knows (a predicted track end, the re-check after a
skip): the regular polls' share leaves it free (less what known moments use beyond it), and a
regular poll never takes the window's last call. A regular poll's call is counted by
:meth:`CallBudget.take`
before the poll, in the same step that checks for room (no room: the poll yields, nothing waits);
the calls it needs after that one (a token refresh) spend inside :func:`regular_poll`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace

from nowplaying.clock import Clock
from nowplaying.coord.ledger import DAY, Learned, Ledger, LocalLedger, seconds_to_midnight

WINDOW = 30.0
"""Spotify's rolling window, in seconds."""
DEFAULT_PER_WINDOW = 60
DEFAULT_PER_DAY = 100_000


@dataclass(slots=True)
class _Regular:
    paid_at: float | None
    """When :meth:`CallBudget.take` counted the poll's call (None: counted, or not taken)."""


_REGULAR: ContextVar[_Regular | None] = ContextVar("nowplaying_regular_poll", default=None)


@contextlib.contextmanager
def regular_poll(paid_at: float | None = None) -> Iterator[None]:
    """Calls spent inside (in this task) are a regular poll's and leave the reserve alone. The
    first is the one :meth:`CallBudget.take` already counted at ``paid_at`` (if given), so it is
    not counted twice; a poll that fails before calling leaves it counted (the budget errs on
    the safe side)."""
    token = _REGULAR.set(_Regular(paid_at))
    try:
        yield
    finally:
        _REGULAR.reset(token)


@dataclass(frozen=True, slots=True)
class Share:
    """An account's part of the budget, read after each of its polls."""

    every: float
    """Seconds between two of its regular polls."""
    slot: int
    """Its place among the ``slots`` polled accounts (on every instance): its regular polls
    fall ``slot / slots`` of ``every`` into each interval, so the accounts' polls spread
    evenly over the window instead of meeting in it."""
    slots: int
    spare: bool
    """The reserve has room for another known moment now (the re-check after a skip is made
    only then: a run of skips must not eat the regular polls' share)."""


class OverBudget(Exception):
    """No call may be made for ``retry_after`` seconds: the day's budget is spent, or Spotify
    asked to wait longer than a call may be held."""

    def __init__(self, retry_after: float, reason: str) -> None:
        super().__init__(f"call budget: {reason}, room again in {retry_after:.0f}s")
        self.retry_after = retry_after
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Usage:
    """The budget in use, for the owner page, ``/healthz`` and metrics."""

    per_window: int
    """The window limit now (configured, or lower while it learns)."""
    configured_per_window: int
    used_window: int
    per_day: int
    configured_per_day: int
    used_day: int
    accounts: int
    """Accounts being polled (on every instance)."""
    blocked_until: float

    def note(self) -> str:
        """One line for the owner page."""
        learned = (
            f" (learned from Spotify's 429s; {self.configured_per_window} configured)"
            if self.per_window < self.configured_per_window
            else ""
        )
        return (
            f"Spotify calls: {self.used_window} of {self.per_window} in the last 30 s{learned},"
            f" {self.used_day:,} of {self.per_day:,} today; {self.accounts} account(s) polled."
        )


class CallBudget:
    """Calls per rolling window and per day, spent before every upstream call (see module)."""

    def __init__(
        self,
        clock: Clock,
        *,
        per_window: int = DEFAULT_PER_WINDOW,
        per_day: int = DEFAULT_PER_DAY,
        ledger: Ledger | None = None,
        window: float = WINDOW,
        margin: float = 0.5,
        decrease: float = 0.7,
        increase: float = 1.0,
        reserve: float = 0.1,
        max_wait: float | None = None,
        slack: int = 1,
    ) -> None:
        if per_window < 1 or per_day < 1:
            raise ValueError("a call budget needs room for at least one call")
        self._clock = clock
        self.configured_per_window = per_window
        self.configured_per_day = per_day
        self.ledger: Ledger = ledger or LocalLedger()
        self.window = window
        self.margin = margin
        """Counted calls stay in the window this much longer than Spotify's 30 s, so a call
        that reaches Spotify a little later than it was counted still finds room."""
        self.decrease = decrease
        self.increase = increase
        self.reserve = reserve
        """The share of the window held for the moments the schedule knows (regular calls
        stop short of it), which the scheduler's shares leave free."""
        self.max_wait = max_wait if max_wait is not None else window + margin + 1.0
        self.slack = slack
        """Calls of the window a regular poll leaves free (its last call, for known moments) and
        the shares leave free for polls a little late. A pull source's budget, a call or four a
        second with no known moments, keeps none: one would be a quarter of it, or all of it."""
        """A call waits at most this long for room; longer is :class:`OverBudget`."""
        self.spent = 0
        self.waited = 0
        self.last: Usage | None = None
        """The usage as last read (by the scheduler at each poll, or :meth:`usage`)."""

    # -- spending --------------------------------------------------------------------------------

    async def spend(self, max_wait: float | None = None) -> float:
        """Wait until a call may be made and count it; the clock time it was counted at.

        Raises :class:`OverBudget` when that would take longer than ``max_wait`` (by default
        the budget's own: a window and a little).
        """
        limit = self.max_wait if max_wait is None else max_wait
        regular = _REGULAR.get()
        if regular is not None and regular.paid_at is not None:
            paid, regular.paid_at = regular.paid_at, None
            return paid  # the regular poll's own call, counted by take()
        while True:
            now = self._clock.now()
            learned = await self.ledger.learned()
            if learned.blocked_until > now:
                wait = learned.blocked_until - now
                reason = "the upstream asked to wait"
            else:
                per_window = self._per_window(learned, now)
                wait = await self.ledger.try_spend(
                    now,
                    self.window + self.margin,
                    self.regular_limit(per_window) if regular is not None else per_window,
                    self._per_day(learned),
                    regular=regular is not None,
                )
                if wait <= 0:
                    self.spent += 1
                    return now
                reason = "the day's calls are spent"
            if wait > limit:
                raise OverBudget(wait, reason)
            self.waited += 1
            await self._clock.sleep(wait)

    async def hold(self, seconds: float) -> None:
        """The upstream said no call for ``seconds`` (its rate-limit headers, a 429's wait):
        nothing is spent before then, on any instance."""
        until = self._clock.now() + seconds
        learned = await self.ledger.learned()
        if until > learned.blocked_until:
            await self.ledger.learn(replace(learned, blocked_until=until))

    async def refused(self, started: float, retry_after: float, *, quota: bool) -> None:
        """Spotify answered 429 to a call counted at ``started``: learn from it."""
        now = self._clock.now()
        learned = await self.ledger.learned()
        if quota:
            _, today = await self.ledger.used(now, self.window)
            per_day = max(1, math.floor(self.decrease * today))
            await self.ledger.learn(
                Learned(
                    learned.cut_to,
                    learned.cut_at,
                    min(per_day, self._per_day(learned)),
                    max(learned.blocked_until, now + retry_after),
                )
            )
            return
        if started < learned.cut_at:
            return  # sent before the last cut: that 429 was already learned from
        in_window, _ = await self.ledger.used(now, self.window)
        current = self._per_window(learned, now)
        cut = max(1.0, self.decrease * min(current, max(1, in_window)))
        await self.ledger.learn(Learned(cut, now, learned.per_day, learned.blocked_until))

    # -- reading ---------------------------------------------------------------------------------

    def _per_window(self, learned: Learned, now: float) -> int:
        if learned.cut_to is None:
            return self.configured_per_window
        grown = learned.cut_to + self.increase * math.floor((now - learned.cut_at) / self.window)
        return max(1, min(self.configured_per_window, math.floor(grown)))

    def _per_day(self, learned: Learned) -> int:
        if learned.per_day is None:
            return self.configured_per_day
        return min(self.configured_per_day, learned.per_day)

    def regular_limit(self, per_window: int) -> int:
        """How many calls in the window a regular call may find and still be made: the limit
        less the reserve held for known moments (at least one call is held once the limit
        allows two, unless the budget keeps no reserve)."""
        if per_window < 2 or self.reserve <= 0:
            return per_window
        return per_window - max(1, math.ceil(per_window * self.reserve))

    async def take(self) -> float | None:
        """Count a regular poll's call now if the window has room for it short of its last call:
        the clock time it was counted at, or None (no room: the poll yields to known moments).
        Nothing waits. Raises :class:`OverBudget` when no call may be made for longer (the
        day is spent, or Spotify's quota): the app pauses, as for any call."""
        now = self._clock.now()
        learned = await self.ledger.learned()
        if learned.blocked_until > now:
            raise OverBudget(learned.blocked_until - now, "the upstream asked to wait")
        wait = await self.ledger.try_spend(
            now,
            self.window + self.margin,
            self._per_window(learned, now) - self.slack,
            self._per_day(learned),
            regular=True,
        )
        if wait <= 0:
            self.spent += 1
            return now
        if wait > self.max_wait:
            raise OverBudget(wait, "the day's calls are spent")
        return None

    async def per_window(self) -> int:
        """The window limit now: the configured one, or lower while it learns."""
        return self._per_window(await self.ledger.learned(), self._clock.now())

    async def interval(self, account_id: str) -> Share:
        """``account_id``'s share, one read of the ledger: every polled account (on every
        instance) gets an equal part of the regular polls' room: the window limit less the
        reserve, less what known moments and other calls in the window use beyond the reserve,
        less one call of slack for polls a little late; paced to the day's remainder. And its
        slot on the grid."""
        now = self._clock.now()
        span = self.window + self.margin  # what the ledger counts a call for
        reading = await self.ledger.mark_active(account_id, now, span)
        learned = reading.learned
        per_window = self._per_window(learned, now)
        others = reading.in_window - reading.regular
        held = per_window - self.regular_limit(per_window)
        room = self.regular_limit(per_window) - self.slack - max(0, others - held)
        left_today = max(0, self._per_day(learned) - reading.today)
        paced = left_today * span / max(span, seconds_to_midnight(now))
        rate = max(min(room, paced), 1e-6)  # regular calls per span, for all accounts
        polled = reading.polled or (account_id,)
        accounts = max(1, reading.accounts)
        self._note_usage(now, learned, reading.in_window, reading.today, accounts)
        return Share(
            every=span * accounts / rate,
            slot=polled.index(account_id) if account_id in polled else 0,
            slots=len(polled),
            spare=others < per_window - self.regular_limit(per_window),
        )

    async def idle(self, account_id: str) -> None:
        """``account_id`` is no longer polled: its share goes to the others."""
        await self.ledger.forget_active(account_id)

    async def usage(self) -> Usage:
        """What is spent and allowed now."""
        now = self._clock.now()
        learned = await self.ledger.learned()
        in_window, today = await self.ledger.used(now, self.window)
        accounts = await self.ledger.active(now)
        return self._note_usage(now, learned, in_window, today, accounts)

    def _note_usage(
        self, now: float, learned: Learned, in_window: int, today: int, accounts: int
    ) -> Usage:
        """Keep (as :attr:`last`) and return the usage from figures already read."""
        self.last = Usage(
            per_window=self._per_window(learned, now),
            configured_per_window=self.configured_per_window,
            used_window=in_window,
            per_day=self._per_day(learned),
            configured_per_day=self.configured_per_day,
            used_day=today,
            accounts=accounts,
            blocked_until=learned.blocked_until if learned.blocked_until > now else 0.0,
        )
        return self.last


def rate_budget(clock: Clock, calls_per_second: float, ledger: Ledger) -> CallBudget:
    """A budget of ``calls_per_second`` for the app (a pull source's: Last.fm, ListenBrainz),
    counted over the shortest window that holds a whole call, with no daily cap of its own and
    no reserve (none of its polls is a known moment)."""
    window = max(1.0, 1.0 / calls_per_second)
    per_window = max(1, math.floor(calls_per_second * window))
    return CallBudget(
        clock,
        per_window=per_window,
        per_day=math.ceil(per_window * DAY / window),
        ledger=ledger,
        window=window,
        margin=0.05,
        reserve=0.0,
        max_wait=0.0,
        slack=0,
    )
