"""The poll policy around a source's reads: who is told what a read met.

A refusal is noted for the owner page and an answer clears it; a read the upstream withdrew from
the app is noted app-wide and told to the owner once; a lost grant is handed to the owner's
notices; the last played track is asked for only when the owner shows it and the grant
tells it. A 429 is the pause's to handle, whichever read met it (:meth:`.pause.AppPause.hit`).
"""

from __future__ import annotations

from typing import Protocol

from nowplaying.engine.pause import Notices
from nowplaying.engine.problems import AccountProblems
from nowplaying.models import NowPlaying, PlayedItem, SourceKind
from nowplaying.sources.base import ReconnectRequired, Refused, Source, Withdrawn
from nowplaying.store import Account

__all__ = ["AccountInfos", "Reads"]


class AccountInfos(Protocol):
    """Where an account's settings are read (the store; its refresh token is not needed)."""

    async def get_account_info(self, account_id: str) -> Account | None: ...


class Reads:
    """A source's reads for the live engine, with what each one tells the owner."""

    def __init__(
        self,
        source: Source,
        *,
        accounts: AccountInfos | None = None,
        problems: AccountProblems | None = None,
        notices: Notices | None = None,
        kind: SourceKind = SourceKind.SPOTIFY,
    ) -> None:
        self.source = source
        self.kind = kind
        """Which upstream the source reads (its refusals are noted under it)."""
        self._accounts = accounts
        """Without them, no last played track is looked up."""
        self._problems = problems
        self._notices = notices

    async def now(self, account_id: str) -> NowPlaying:
        """What the account plays: one upstream read (the source's errors raised)."""
        try:
            playing = await self.source.now_playing(account_id)
        except Withdrawn as e:
            await self._withdrawn(e)
            raise
        except Refused as e:
            if self._problems is not None:
                await self._problems.note(account_id, e, self.kind)
            raise
        except ReconnectRequired:
            if self._notices is not None:
                self._notices.reconnect_needed(account_id)
            raise
        if self._problems is not None:
            await self._problems.clear(account_id, self.kind)
        return playing

    async def shows_history(self, account_id: str) -> bool:
        """Whether the owner shows the last played track (whatever the source)."""
        if self._accounts is None:
            return False
        account = await self._accounts.get_account_info(account_id)
        return account is not None and account.show_last_played

    async def last_played(self, account_id: str) -> PlayedItem | None:
        """The last track played, when the owner shows it and the grant allows it."""
        if self._accounts is None:
            return None
        account = await self._accounts.get_account_info(account_id)
        if account is None or not account.show_last_played:
            return None
        if not self.source.tells_history(account.scopes):
            return None
        items = await self.recently_played(account_id, 1)
        return items[0] if items else None

    async def recently_played(self, account_id: str, limit: int) -> list[PlayedItem]:
        """The account's last ``limit`` items (the source's errors raised, a withdrawal told)."""
        try:
            return await self.source.recently_played(account_id, limit)
        except Withdrawn as e:
            await self._withdrawn(e)
            raise

    async def _withdrawn(self, error: Withdrawn) -> None:
        """The upstream withdrew a read from the app: noted for every owner page, told once."""
        first = await self._problems.withdrawn(error) if self._problems is not None else True
        if first and self._notices is not None:
            self._notices.withdrawn(error.what, error.disabled, error.fix)
