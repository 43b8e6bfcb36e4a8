"""An upstream's refusals of an account, remembered for the people who can fix them.

A refusal (Spotify's development-mode 403s) is not an outage: polling again will not help, the
app's owner must act in the Developer Dashboard. A refusal not seen again for ``ttl`` seconds is
forgotten, so a note cannot outlive a fixed dashboard for long, even when another instance polls.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from nowplaying.clock import Clock
from nowplaying.coord.link import Keys, RedisLink
from nowplaying.sources.base import Refused


@dataclass(frozen=True, slots=True)
class UpstreamRefusal:
    """An upstream's latest refusal of an account: its kind, the upstream's text and the fix."""

    kind: str
    """``not_registered``, ``premium_required`` or ``forbidden``."""
    reason: str
    fix: str
    at: float


def refusal_of(error: Refused, at: float) -> UpstreamRefusal:
    """The :class:`UpstreamRefusal` an upstream's refusal means."""
    return UpstreamRefusal(error.kind, error.reason[:200], error.fix, at)


class AccountProblems:
    """The latest refusal per account: in this process, and in Redis when given one."""

    def __init__(self, clock: Clock, *, ttl: float = 900.0, link: RedisLink | None = None) -> None:
        self._clock = clock
        self._ttl = ttl
        self.link = link
        self._refusals: dict[str, UpstreamRefusal] = {}

    async def note(self, account_id: str, error: Refused) -> UpstreamRefusal:
        """Remember that the upstream refused the account with ``error``."""
        refusal = refusal_of(error, self._clock.now())
        self._refusals[account_id] = refusal
        if self.link is not None:
            payload = json.dumps(asdict(refusal))
            ttl = max(1, int(self._ttl))
            await self.link.call(
                self.link.redis.set(Keys.refusal(account_id), payload, ex=ttl), None
            )
        return refusal

    async def clear(self, account_id: str) -> None:
        """The upstream answered for the account again: forget its refusal (everywhere, if known
        here)."""
        if self._refusals.pop(account_id, None) is not None and self.link is not None:
            await self.link.call(self.link.redis.delete(Keys.refusal(account_id)), None)

    async def load(self, account_id: str) -> None:
        """Take another instance's note of the account (before :meth:`get`, on a page)."""
        if self.link is None:
            return
        raw = await self.link.call(self.link.redis.get(Keys.refusal(account_id)), None)
        if raw is None and self.link.degraded:  # unreachable: keep this process's note
            return
        if raw is None:
            self._refusals.pop(account_id, None)
            return
        try:
            self._refusals[account_id] = UpstreamRefusal(**json.loads(raw))
        except (ValueError, TypeError):
            return

    def get(self, account_id: str) -> UpstreamRefusal | None:
        """The account's refusal, unless it is older than the TTL."""
        refusal = self._refusals.get(account_id)
        if refusal is not None and self._clock.now() - refusal.at > self._ttl:
            del self._refusals[account_id]
            return None
        return refusal
