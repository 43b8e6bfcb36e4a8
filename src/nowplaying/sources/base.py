"""The seam between the engine and an upstream: the :class:`Source` protocol and its errors.

The engine asks a source what an account plays and what it played; it never sees which upstream
answered. Each source raises only this tree (its own errors subclass these)::

    SourceError
     ├── ReconnectRequired   the grant is gone: connecting again is the only fix
     ├── RateLimited         wait ``retry_after`` seconds; ``quota``: the long (hours) quota
     ├── Refused             the upstream refuses this account: ``kind``, ``reason``, ``fix``
     │    └── Withdrawn       the upstream no longer serves one read (``what``) to this app, for
     │                         any account: ``disabled`` says what goes without it
     └── Unavailable         no useful answer now (outage, timeout): try again later
          └── BadResponse    an answer the upstream's contract does not allow
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from nowplaying.models import QUOTA_EXCEEDED, NowPlaying, PlayedItem

__all__ = [
    "BadResponse",
    "RateLimited",
    "ReconnectRequired",
    "Refused",
    "Source",
    "SourceError",
    "Unavailable",
    "Withdrawn",
]


class Source(Protocol):
    """Where the engine reads what an account plays (credentials are the source's business)."""

    async def now_playing(self, account_id: str) -> NowPlaying:
        """What plays now; nothing playing is a :class:`NowPlaying` that is not ``active``."""
        ...

    async def recently_played(self, account_id: str, limit: int) -> list[PlayedItem]:
        """The last ``limit`` items played, newest first."""
        ...

    def tells_history(self, scopes: frozenset[str]) -> bool:
        """Whether a grant of ``scopes`` lets :meth:`recently_played` be read."""
        ...


class SourceError(Exception):
    """Base of every error a source raises."""


class ReconnectRequired(SourceError):
    """The grant is revoked or expired: the owner must connect again."""


class RateLimited(SourceError):
    """The upstream asks the whole app to wait ``retry_after`` seconds. ``reason`` is the
    upstream's (:data:`~nowplaying.models.QUOTA_EXCEEDED` for the long quota) or ours."""

    def __init__(self, retry_after: float, reason: str | None = None) -> None:
        SourceError.__init__(self, f"rate limited for {retry_after:g}s ({reason or 'no reason'})")
        self.retry_after = retry_after
        self.reason = reason

    @property
    def quota(self) -> bool:
        """The long quota (hours), not the rolling-window limit (seconds)."""
        return self.reason == QUOTA_EXCEEDED


class Refused(SourceError):
    """The upstream refuses this account and asking again will not help: someone must act.
    ``reason`` is the upstream's text, ``kind`` a slug for it, ``fix`` what to do, for a person."""

    kind: ClassVar[str] = "forbidden"
    fix: ClassVar[str] = "The upstream refused this account's access; reconnecting will not help."

    def __init__(self, reason: str) -> None:
        SourceError.__init__(self, f"refused: {reason}")
        self.reason = reason


class Withdrawn(Refused):
    """The upstream no longer serves one of its reads (``what``) to this app, whichever account
    asks: nothing to retry, and nothing an account's owner can reconnect. ``disabled`` says, for
    a person, what the widget goes without."""

    kind: ClassVar[str] = "withdrawn"
    what: str = ""
    disabled: str = ""


class Unavailable(SourceError):
    """The upstream gave no useful answer now: an outage, a timeout, a call put off."""


class BadResponse(Unavailable):
    """The upstream answered with something its contract does not allow."""
