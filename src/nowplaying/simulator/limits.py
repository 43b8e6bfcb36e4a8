"""Spotify's three 429s, simulated: the rolling window, the daily quota, a removed endpoint.

From ``spotify-contract.md`` §6 and §3: the rate limit is per app over 30 seconds (its number
unpublished); the development-mode quota is per developer account across its apps, answered with
``reason: QUOTA_EXCEEDED`` and hours of Retry-After (here: until the next UTC midnight). A refused
call is not counted, so Retry-After is exactly the time until the window has room again. An
endpoint removed for development-mode apps (April 2026) answers every call with a 429 like the
window's (no ``reason``, :data:`REMOVED_RETRY`): only that it never passes tells it apart.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass
from email.utils import formatdate

from starlette.responses import JSONResponse, Response

from nowplaying.clock import Clock

DAY = 86400.0
QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
DEFAULT_DEVELOPER = "developer"
"""The developer account every app belongs to unless told otherwise."""
REMOVED_RETRY = 11
"""The Retry-After (seconds) a removed endpoint's 429 carries (as reported, April 2026)."""
_KEEP = 200_000  # accepted call times kept per app (for max_in_window); older ones are dropped


@dataclass(frozen=True, slots=True)
class LimitHit:
    """Why a call was refused: ``reason`` None for the window, ``QUOTA_EXCEEDED`` for the quota."""

    retry_after: int
    reason: str | None
    at: float | None = None
    """When it was given, if Retry-After is to be sent as an HTTP-date (with ``Date``)."""

    def response(self) -> Response:
        """Spotify's 429: the Web API error body, with ``reason`` for the quota."""
        error: dict[str, object] = {"status": 429, "message": "Too many requests"}
        if self.reason is not None:
            error["reason"] = self.reason
        headers = {"Retry-After": str(self.retry_after)}
        if self.at is not None:
            headers = {
                "Retry-After": formatdate(self.at + self.retry_after, usegmt=True),
                "Date": formatdate(self.at, usegmt=True),
            }
        return JSONResponse({"error": error}, 429, headers=headers)


class Limits:
    """The rate limit per app and the quota per developer account, on the simulator's clock."""

    def __init__(
        self,
        clock: Clock,
        *,
        window_calls: int | None = None,
        window_seconds: float = 30.0,
        daily_quota: int | None = None,
    ) -> None:
        self._clock = clock
        self.window_calls = window_calls
        """Calls an app may make in any ``window_seconds``; None: no limit."""
        self.window_seconds = window_seconds
        self.daily_quota = daily_quota
        """Calls a developer account's apps may make per UTC day; None: no quota."""
        self.developers: dict[str, str] = {}
        """client id → developer account (unlisted: :data:`DEFAULT_DEVELOPER`)."""
        self.removed: frozenset[str] = frozenset()
        """Endpoints (``currently-playing``, ``recently-played``, ...) removed for every app."""
        self.retry_after_dates = False
        """Send ``Retry-After`` as an HTTP-date instead of delta-seconds."""
        self.counts: Counter[str] = Counter()
        """``accepted``, ``window_429``, ``quota_429``, ``removed_429``; also per app
        (``accepted:<client id>``)."""
        self.refused_at: list[tuple[float, str | None]] = []
        """When each 429 was given, and its reason (None: the window)."""
        self._calls: dict[str, deque[float]] = {}
        self._days: dict[str, tuple[int, int]] = {}

    # -- configuration -------------------------------------------------------------------------

    def configure(
        self,
        *,
        window_calls: int | None,
        window_seconds: float | None = None,
        daily_quota: int | None,
    ) -> None:
        """Set both limits (None turns one off); what was counted so far stays counted."""
        if window_calls is not None and window_calls < 0:
            raise ValueError("window_calls must be at least 0")
        if daily_quota is not None and daily_quota < 0:
            raise ValueError("daily_quota must be at least 0")
        if window_seconds is not None:
            if not math.isfinite(window_seconds) or window_seconds <= 0:
                raise ValueError("window_seconds must be positive")
            self.window_seconds = window_seconds
        self.window_calls = window_calls
        self.daily_quota = daily_quota

    def reset(self) -> None:
        """Forget every counted call and counter (the limits themselves stay)."""
        self.counts.clear()
        self.refused_at.clear()
        self._calls.clear()
        self._days.clear()

    # -- the gate ------------------------------------------------------------------------------

    def admit(self, client_id: str, endpoint: str = "token") -> LimitHit | None:
        """Count one call by ``client_id``'s app, or say why Spotify refuses it (not counted)."""
        now = self._clock.now()
        if endpoint in self.removed:
            self.counts["removed_429"] += 1
            self.refused_at.append((now, None))
            return LimitHit(REMOVED_RETRY, None, now if self.retry_after_dates else None)
        developer = self.developers.get(client_id, DEFAULT_DEVELOPER)
        day = int(now // DAY)
        used_day = self._days.get(developer, (day, 0))
        used_today = used_day[1] if used_day[0] == day else 0
        if self.daily_quota is not None and used_today >= self.daily_quota:
            return self._refuse(now, math.ceil((day + 1) * DAY - now), QUOTA_EXCEEDED)
        calls = self._calls.setdefault(client_id, deque(maxlen=_KEEP))
        if self.window_calls is not None:
            recent = self._in_window(calls, now)
            if recent >= self.window_calls:
                # Room comes back when the oldest call still counted leaves the window.
                oldest = calls[len(calls) - recent] if recent else now
                wait = max(1, math.ceil(oldest + self.window_seconds - now))
                return self._refuse(now, wait, None)
        calls.append(now)
        self._days[developer] = (day, used_today + 1)
        self.counts["accepted"] += 1
        self.counts[f"accepted:{client_id}"] += 1
        return None

    def _refuse(self, now: float, retry_after: int, reason: str | None) -> LimitHit:
        self.counts["quota_429" if reason == QUOTA_EXCEEDED else "window_429"] += 1
        self.refused_at.append((now, reason))
        return LimitHit(retry_after, reason, now if self.retry_after_dates else None)

    def _in_window(self, calls: deque[float], now: float) -> int:
        """How many of ``calls`` (ascending times) lie in the window ending at ``now``."""
        start = now - self.window_seconds
        n = 0
        for t in reversed(calls):
            if t <= start:
                break
            n += 1
        return n

    # -- what tests read -----------------------------------------------------------------------

    def in_window(self, client_id: str) -> int:
        """Calls ``client_id``'s app made in the window ending now."""
        return self._in_window(self._calls.get(client_id, deque()), self._clock.now())

    def used_today(self, developer: str = DEFAULT_DEVELOPER) -> int:
        """Calls the developer account's apps made today (UTC)."""
        day, used = self._days.get(developer, (0, 0))
        return used if day == int(self._clock.now() // DAY) else 0

    def calls(self, client_id: str) -> list[float]:
        """When each accepted call of the app was made, oldest first."""
        return list(self._calls.get(client_id, ()))

    def max_in_window(self, client_id: str, seconds: float | None = None) -> int:
        """The most accepted calls the app made in any rolling window of ``seconds``."""
        return max_in_window(self.calls(client_id), seconds or self.window_seconds)

    def snapshot(self) -> dict[str, object]:
        """The limits, what is used and the counters, as the control API shows them."""
        return {
            "window_calls": self.window_calls,
            "window_seconds": self.window_seconds,
            "daily_quota": self.daily_quota,
            "removed": sorted(self.removed),
            "retry_after_dates": self.retry_after_dates,
            "in_window": {cid: self.in_window(cid) for cid in self._calls},
            "used_today": {dev: self.used_today(dev) for dev in self._days},
            "counts": dict(self.counts),
        }


def max_in_window(times: list[float], seconds: float) -> int:
    """The most of ``times`` (ascending) that fall in any half-open window ``(t - seconds, t]``."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - seconds:
            start += 1
        best = max(best, end - start + 1)
    return best
