"""An upstream's refusals of an account, remembered for the people who can fix them.

A refusal (Spotify's development-mode 403s, a private Last.fm profile) is not an outage: polling
again will not help, someone must act (the app's owner in the Developer Dashboard, the listener
in Last.fm's privacy settings). A refusal not seen again for ``ttl`` seconds is
forgotten, so a note cannot outlive a fixed dashboard for long, even when another instance polls.

A read the upstream withdrew from the app (:class:`~nowplaying.sources.base.Withdrawn`: Spotify's
endpoints removed for development-mode apps) is no account's problem: it is noted app-wide, kept
while this process has the read disabled, and shared for :data:`WITHDRAWN_TTL` through Redis.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from nowplaying.clock import Clock
from nowplaying.coord.keys import Keys
from nowplaying.models import SourceKind
from nowplaying.sources.base import Refused, Withdrawn

if TYPE_CHECKING:  # redis-py is loaded only where a Redis URL is set
    from nowplaying.coord.link import RedisLink

WITHDRAWN_TTL = 86400.0
"""Seconds another instance shows a withdrawn read after the last instance that met it said so."""


@dataclass(frozen=True, slots=True)
class UpstreamRefusal:
    """An upstream's latest refusal of an account: its kind, the upstream's text and the fix."""

    kind: str
    """``not_registered``, ``premium_required`` or ``forbidden`` (Spotify's); ``private``,
    ``not_found``, ``key_refused`` (Last.fm's, ListenBrainz's)."""
    reason: str
    fix: str
    at: float


def refusal_of(error: Refused, at: float) -> UpstreamRefusal:
    """The :class:`UpstreamRefusal` an upstream's refusal means."""
    return UpstreamRefusal(error.kind, error.reason[:200], error.fix, at)


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """A read the upstream no longer serves to the app: which, what goes without it, the fix."""

    what: str
    disabled: str
    fix: str
    at: float


class AccountProblems:
    """The latest refusal per account: in this process, and in Redis when given one."""

    def __init__(self, clock: Clock, *, ttl: float = 900.0, link: RedisLink | None = None) -> None:
        self._clock = clock
        self._ttl = ttl
        self.link = link
        self._refusals: dict[str, UpstreamRefusal] = {}
        self._withdrawn: dict[str, Withdrawal] = {}

    async def note(
        self, account_id: str, error: Refused, source: SourceKind = SourceKind.SPOTIFY
    ) -> UpstreamRefusal:
        """Remember that the upstream ``source`` refused the account with ``error``."""
        key = _key(account_id, source)
        refusal = refusal_of(error, self._clock.now())
        self._refusals[key] = refusal
        if self.link is not None:
            payload = json.dumps(asdict(refusal))
            ttl = max(1, int(self._ttl))
            await self.link.call(self.link.redis.set(Keys.refusal(key), payload, ex=ttl), None)
        return refusal

    async def clear(self, account_id: str, source: SourceKind = SourceKind.SPOTIFY) -> None:
        """The upstream answered for the account again: forget its refusal (everywhere, if known
        here)."""
        key = _key(account_id, source)
        if self._refusals.pop(key, None) is not None and self.link is not None:
            await self.link.call(self.link.redis.delete(Keys.refusal(key)), None)

    async def withdrawn(self, error: Withdrawn) -> bool:
        """Remember, app-wide, that the upstream withdrew ``error.what``; whether this process
        had not known it (the owner is then told)."""
        old = self._withdrawn.get(error.what)
        now = self._clock.now()
        self._withdrawn[error.what] = Withdrawal(error.what, error.disabled, error.fix, now)
        if self.link is not None and (old is None or now - old.at >= WITHDRAWN_TTL / 2):
            payload = json.dumps(asdict(self._withdrawn[error.what]))
            redis = self.link.redis
            await self.link.call(redis.hset(Keys.WITHDRAWN, error.what, payload), None)
            await self.link.call(redis.expire(Keys.WITHDRAWN, int(WITHDRAWN_TTL)), None)
        return old is None

    def withdrawals(self) -> list[Withdrawal]:
        """The reads withdrawn from the app, by name."""
        return [self._withdrawn[what] for what in sorted(self._withdrawn)]

    async def load(self, account_id: str, *sources: SourceKind) -> None:
        """Take another instance's notes of the account (by Spotify, and by each of
        ``sources``) and of withdrawn reads (before :meth:`get` and :meth:`withdrawals`)."""
        if self.link is None:
            return
        await self._load_withdrawn(self.link)
        for source in (SourceKind.SPOTIFY, *sources):
            await self._load_refusal(self.link, _key(account_id, source))

    async def _load_refusal(self, link: RedisLink, key: str) -> None:
        raw = await link.call(link.redis.get(Keys.refusal(key)), None)
        if raw is None and link.degraded:  # unreachable: keep this process's note
            return
        if raw is None:
            self._refusals.pop(key, None)
            return
        try:
            self._refusals[key] = UpstreamRefusal(**json.loads(raw))
        except (ValueError, TypeError):
            return

    async def _load_withdrawn(self, link: RedisLink) -> None:
        empty: dict[bytes | str, bytes | str] = {}
        shared = await link.call(link.redis.hgetall(Keys.WITHDRAWN), empty)
        for what, note in shared.items():
            try:
                self._withdrawn.setdefault(str(what), Withdrawal(**json.loads(note)))
            except (ValueError, TypeError):
                continue

    def get(
        self, account_id: str, source: SourceKind = SourceKind.SPOTIFY
    ) -> UpstreamRefusal | None:
        """The account's refusal by ``source``, unless it is older than the TTL."""
        key = _key(account_id, source)
        refusal = self._refusals.get(key)
        if refusal is not None and self._clock.now() - refusal.at > self._ttl:
            del self._refusals[key]
            return None
        return refusal


def _key(account_id: str, source: SourceKind) -> str:
    """Spotify's refusals keep the account's own key (as before there were other sources)."""
    return account_id if source is SourceKind.SPOTIFY else f"{account_id}/{source}"
