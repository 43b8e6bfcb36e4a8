"""The poll policy around a source's reads: refusals noted and cleared, a lost grant told, the
last played track asked for only when the owner shows it and the grant allows it."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from harness.engine import FakeAccounts, FakeNotices

from nowplaying.clock import FakeClock
from nowplaying.engine.problems import AccountProblems
from nowplaying.engine.reads import Reads
from nowplaying.models import Item, Kind, NowPlaying, PlayedItem
from nowplaying.sources.base import ReconnectRequired, Refused, SourceError, Withdrawn
from nowplaying.store import Account

pytestmark = pytest.mark.anyio

SONG = PlayedItem(Item(Kind.TRACK, "Song", ("Artist",), None, None, None, 200_000), played_at=100.0)
HISTORY = "history"


@dataclass
class FakeSource:
    """A source answering from a script: each read raises the next error, else answers."""

    errors: list[SourceError] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    async def now_playing(self, account_id: str) -> NowPlaying:
        self.calls.append("now")
        if self.errors:
            raise self.errors.pop(0)
        return NowPlaying(is_playing=False)

    async def recently_played(self, account_id: str, limit: int) -> list[PlayedItem]:
        self.calls.append(f"recent:{limit}")
        return [SONG]

    def tells_history(self, scopes: frozenset[str]) -> bool:
        return HISTORY in scopes


def account(*, shows: bool, scopes: frozenset[str]) -> Account:
    return Account("ana", "Ana", "", scopes, consented_at=0.0, show_last_played=shows)


async def test_a_refusal_is_noted_for_the_owner_and_an_answer_clears_it() -> None:
    source = FakeSource(errors=[Refused("not registered")])
    problems = AccountProblems(FakeClock())
    reads = Reads(source, problems=problems)
    with pytest.raises(Refused):
        await reads.now("ana")
    noted = problems.get("ana")
    assert noted is not None and noted.kind == "forbidden" and noted.reason == "not registered"
    assert await reads.now("ana") == NowPlaying(is_playing=False)
    assert problems.get("ana") is None


async def test_a_lost_grant_is_told_to_the_owner() -> None:
    notices = FakeNotices()
    reads = Reads(FakeSource(errors=[ReconnectRequired("revoked")]), notices=notices)
    with pytest.raises(ReconnectRequired):
        await reads.now("ana")
    assert notices.reconnects == ["ana"]
    assert notices.pauses == []


@pytest.mark.parametrize(
    ("shows", "scopes", "expected", "calls"),
    [
        (True, frozenset({HISTORY}), SONG, ["recent:1"]),
        (False, frozenset({HISTORY}), None, []),
        (True, frozenset(), None, []),
    ],
)
async def test_the_last_played_track_only_when_shown_and_granted(
    shows: bool, scopes: frozenset[str], expected: PlayedItem | None, calls: list[str]
) -> None:
    source = FakeSource()
    accounts = FakeAccounts({"ana": account(shows=shows, scopes=scopes)})
    reads = Reads(source, accounts=accounts)
    assert await reads.last_played("ana") == expected
    assert await reads.last_played("bob") is None  # not stored: nothing asked
    assert source.calls == calls


async def test_without_account_settings_no_last_played_is_asked_for() -> None:
    source = FakeSource()
    assert await Reads(source).last_played("ana") is None
    assert source.calls == []


@dataclass
class WithdrawingSource(FakeSource):
    """A source whose every read is withdrawn from the app (Spotify's removed endpoints)."""

    async def now_playing(self, account_id: str) -> NowPlaying:
        self.calls.append("now")
        raise Gone("currently-playing")

    async def recently_played(self, account_id: str, limit: int) -> list[PlayedItem]:
        self.calls.append(f"recent:{limit}")
        raise Gone("recently-played")


class Gone(Withdrawn):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} removed")
        self.what, self.disabled = what, f"no {what}"


async def test_a_withdrawn_read_is_noted_app_wide_and_told_once_not_as_a_refusal() -> None:
    """A read the upstream withdrew from the app: noted for every owner page (not as the
    account's refusal, which an answer would clear), the owner told once however often met."""
    notices = FakeNotices()
    problems = AccountProblems(FakeClock())
    reads = Reads(WithdrawingSource(), problems=problems, notices=notices)
    for _ in range(3):
        with pytest.raises(Withdrawn):
            await reads.recently_played("ana", 5)
    with pytest.raises(Withdrawn):
        await reads.now("ana")
    assert [w.what for w in problems.withdrawals()] == ["currently-playing", "recently-played"]
    assert problems.withdrawals()[1].disabled == "no recently-played"
    assert notices.withdrawn_reads == ["recently-played", "currently-playing"]
    assert problems.get("ana") is None
