"""Spotify's refusals of an account, remembered for the people who can fix them.

A development-mode 403 (:class:`~nowplaying.spotify.NotRegistered`,
:class:`~nowplaying.spotify.PremiumRequired`) is not an outage: polling again will not help,
the app's owner must act in the Developer Dashboard. The poll path notes the refusal here and a
successful read clears it; the owner page and ``nowplaying doctor`` say what it means and what
fixes it, instead of a generic "stale".

Kept in this process (the instance that polls the account notes it); a refusal older than
``ttl`` seconds is forgotten, so a stale note cannot outlive a fixed dashboard for long.
"""

from __future__ import annotations

from dataclasses import dataclass

from .clock import Clock
from .spotify import Forbidden, NotRegistered, PremiumRequired


@dataclass(frozen=True, slots=True)
class Refusal:
    """Spotify's latest refusal of an account: its kind, Spotify's text and the fix."""

    kind: str
    """``not_registered``, ``premium_required`` or ``forbidden``."""
    reason: str
    fix: str
    at: float


def refusal_of(error: Forbidden, at: float) -> Refusal:
    """The :class:`Refusal` a 403 means."""
    if isinstance(error, NotRegistered):
        kind = "not_registered"
    elif isinstance(error, PremiumRequired):
        kind = "premium_required"
    else:
        kind = "forbidden"
    return Refusal(kind, error.reason[:200], error.fix, at)


class AccountProblems:
    """The latest refusal per account, in this process."""

    def __init__(self, clock: Clock, *, ttl: float = 3600.0) -> None:
        self._clock = clock
        self._ttl = ttl
        self._refusals: dict[str, Refusal] = {}

    def note(self, account_id: str, error: Forbidden) -> Refusal:
        """Remember that Spotify refused the account with ``error``."""
        refusal = refusal_of(error, self._clock.now())
        self._refusals[account_id] = refusal
        return refusal

    def clear(self, account_id: str) -> None:
        """Spotify answered the account again: forget its refusal."""
        self._refusals.pop(account_id, None)

    def get(self, account_id: str) -> Refusal | None:
        """The account's refusal, unless it is older than the TTL."""
        refusal = self._refusals.get(account_id)
        if refusal is not None and self._clock.now() - refusal.at > self._ttl:
            del self._refusals[account_id]
            return None
        return refusal
