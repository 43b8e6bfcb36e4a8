"""Last.fm and ListenBrainz as :class:`~nowplaying.sources.base.Source`: a widget's linked user,
read within the source's own call budget.

Each read spends from the source's budget first (never waiting: a poll that finds no room is
put off, :class:`~nowplaying.sources.base.Unavailable`), and what the upstream says of its
limits holds that budget on every instance: Last.fm's error 29, ListenBrainz's 429 and its
``X-RateLimit-Remaining: 0`` until ``X-RateLimit-Reset-In``. A widget without the source linked
(or whose link needs connecting again) is :class:`~nowplaying.sources.base.ReconnectRequired`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar, Protocol, TypeVar

from nowplaying.models import AccountStatus, NowPlaying, PlayedItem, SourceKind
from nowplaying.sources.base import RateLimited, ReconnectRequired, Unavailable
from nowplaying.sources.budget import CallBudget, OverBudget
from nowplaying.sources.lastfm import LastFmClient
from nowplaying.sources.listenbrainz import ListenBrainzClient
from nowplaying.store import SourceLink

__all__ = ["LastFmSource", "LinkCache", "Links", "ListenBrainzSource", "user_of"]

T = TypeVar("T")


class Links(Protocol):
    """Where a widget's linked sources are read (the store; secrets left sealed)."""

    async def list_sources(self, account_id: str) -> list[SourceLink]: ...


class LinkCache:
    """The widgets' linked sources as last listed from the store (by the engine, when a widget's
    poller starts, restarts, and every few minutes: :meth:`refresh`), so a read needs no store
    read of its own."""

    def __init__(self, links: Links) -> None:
        self._links = links
        self._known: dict[str, list[SourceLink]] = {}

    async def refresh(self, account_id: str) -> list[SourceLink]:
        """The widget's sources, listed from the store now."""
        self._known[account_id] = await self._links.list_sources(account_id)
        return self._known[account_id]

    async def list_sources(self, account_id: str) -> list[SourceLink]:
        """The widget's sources as last listed (listed now if never)."""
        known = self._known.get(account_id)
        return known if known is not None else await self.refresh(account_id)

    def forget(self, account_id: str) -> None:
        self._known.pop(account_id, None)


async def user_of(links: Links, account_id: str, kind: SourceKind) -> str:
    """The user name the widget's source of ``kind`` reads, or ReconnectRequired."""
    for link in await links.list_sources(account_id):
        if link.kind is kind and link.status is AccountStatus.ACTIVE and not link.key_missing:
            return link.user_name
    raise ReconnectRequired(f"no {kind} source linked")


async def _spend(budget: CallBudget, kind: SourceKind) -> None:
    try:
        await budget.spend(max_wait=0.0)
    except OverBudget as e:
        raise Unavailable(f"{kind} call budget: {e.reason}") from e


class _Pulled:
    """What both pull sources share: the widget's linked user, read within the budget."""

    kind: ClassVar[SourceKind]

    def __init__(self, links: Links, budget: CallBudget) -> None:
        self._links = links
        self.budget = budget

    async def _read(self, account_id: str, fetch: Callable[[str], Awaitable[T]]) -> T:
        """``fetch`` the linked user's answer, spent from the budget; a rate limit holds it."""
        user = await user_of(self._links, account_id, self.kind)
        await _spend(self.budget, self.kind)
        try:
            return await fetch(user)
        except RateLimited as e:
            await self.budget.hold(e.retry_after)
            raise


class LastFmSource(_Pulled):
    """What a widget's Last.fm user scrobbles now; the last scrobble comes with it, kept for
    :meth:`recently_played` (no second call)."""

    kind = SourceKind.LASTFM

    def __init__(self, client: LastFmClient, links: Links, budget: CallBudget) -> None:
        super().__init__(links, budget)
        self._client = client
        self._last: dict[str, PlayedItem] = {}

    async def now_playing(self, account_id: str) -> NowPlaying:
        playing, last = await self._read(account_id, self._client.now_playing)
        if last is not None:
            self._last[account_id] = last
        return playing

    async def recently_played(self, account_id: str, limit: int) -> list[PlayedItem]:
        last = self._last.get(account_id)
        return [last][:limit] if last is not None else []

    def tells_history(self, scopes: frozenset[str]) -> bool:
        return True


class ListenBrainzSource(_Pulled):
    """What a widget's ListenBrainz user plays now, within the rate-limit headers' allowance."""

    kind = SourceKind.LISTENBRAINZ

    def __init__(self, client: ListenBrainzClient, links: Links, budget: CallBudget) -> None:
        super().__init__(links, budget)
        self._client = client

    async def now_playing(self, account_id: str) -> NowPlaying:
        playing, allowance = await self._read(account_id, self._client.playing_now)
        if allowance.remaining == 0 and allowance.reset_in is not None:
            await self.budget.hold(allowance.reset_in)
        return playing

    async def recently_played(self, account_id: str, limit: int) -> list[PlayedItem]:
        return []

    def tells_history(self, scopes: frozenset[str]) -> bool:
        return False
