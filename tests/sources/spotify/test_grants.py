"""The token manager against the simulator in "rotate" mode, with fakes at its other edges: a
store whose ``set_refresh_token`` fails on demand, and a coordinator whose lock cannot be had."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import httpx
import pytest
from harness.cluster import run_async
from harness.disk import fill
from harness.services import POSTGRES_URL, require
from pydantic import SecretStr

from nowplaying.clock import FakeClock
from nowplaying.coord.base import CoordinationError, LocalCoordinator
from nowplaying.crypto import TokenCipher
from nowplaying.models import NowPlaying, SourceKind
from nowplaying.simulator import Simulator
from nowplaying.sources.spotify.client import SpotifyClient
from nowplaying.sources.spotify.errors import InvalidGrant, SpotifyUnavailable
from nowplaying.sources.spotify.grants import AccountGone, RefreshDeferred, TokenManager
from nowplaying.store import Account, AccountStatus, PostgresStore, SQLiteStore, StoreError
from nowplaying.store.kept import KeptTokens

pytestmark = pytest.mark.anyio

KEY = "token-tests-secret-key-0123456789abcdefghij"
OLD_KEY = "token-tests-old-secret-key-0123456789abcdef"
BASE = "http://sim.test"
HOUR = 3600.0


class FlakyStore(SQLiteStore):
    """The SQLite store, refusing the next ``fail`` refresh-token writes (a full disk)."""

    def __init__(self, path: str | Path, *, cipher: TokenCipher) -> None:
        super().__init__(path, cipher=cipher)
        self.fail = 0
        self.refused = 0
        self.statuses: list[AccountStatus] = []

    async def set_refresh_token(self, account_id: str, refresh_token: str) -> None:
        if self.fail > 0:
            self.fail -= 1
            self.refused += 1
            raise StoreError("database or disk is full")
        await super().set_refresh_token(account_id, refresh_token)

    async def set_status(self, account_id: str, status: AccountStatus) -> None:
        self.statuses.append(status)
        await super().set_status(account_id, status)

    async def stored_token(self, account_id: str = "demo") -> str:
        account = await self.get_account(account_id)
        assert account is not None
        return account.refresh_token


class Unlockable(LocalCoordinator):
    """In-process coordination with a shared access token, whose lock can be made to fail as
    the Redis one does (held elsewhere too long, Redis unreachable)."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False
        self.attempts = 0
        self.shared: str | None = None

    @contextlib.asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        self.attempts += 1
        if self.broken:
            raise CoordinationError(f"lock {name!r}: Redis is unreachable")
        async with super().lock(name):
            yield

    async def get_token(self, account_id: str) -> str | None:
        return self.shared

    async def put_token(self, account_id: str, payload: str, ttl: float) -> None:
        self.shared = payload


@dataclass
class Rig:
    sim: Simulator
    clock: FakeClock
    client: SpotifyClient
    store: FlakyStore
    coord: Unlockable
    tokens: TokenManager
    presented: list[str] = field(default_factory=list)
    """Every refresh token sent to the token endpoint, in order."""
    issued: list[str] = field(default_factory=list)
    """Every refresh token the token endpoint handed out, in order."""
    before_token: list[Callable[[], None]] = field(default_factory=list)
    """Run as a token request leaves (once each), e.g. to fill the disk in mid-refresh."""

    def manager(self) -> TokenManager:
        """Another token manager on the same store and coordinator (another instance)."""
        return TokenManager(self.client, self.store, self.clock, coord=self.coord)

    async def playing(self, tokens: TokenManager | None = None) -> NowPlaying:
        """One Web API read with the manager's token (the simulator checks the token)."""
        return await (tokens or self.tokens).call("demo", self.client.currently_playing)


@pytest.fixture
async def rig(clock: FakeClock) -> AsyncIterator[Rig]:
    async with _rig(clock, ":memory:") as made:
        yield made


@contextlib.asynccontextmanager
async def _rig(clock: FakeClock, path: str | Path) -> AsyncIterator[Rig]:
    sim = Simulator(clock=clock, refresh_mode="rotate")
    sim.player("demo").set_gaps(0)
    grant = sim.grant("demo")
    assert grant.refresh_token
    presented: list[str] = []
    issued: list[str] = [grant.refresh_token]

    before_token: list[Callable[[], None]] = []

    async def on_request(request: httpx.Request) -> None:
        if request.url.path == "/api/token":
            form = parse_qs(request.content.decode())
            presented.extend(form.get("refresh_token", []))
            while before_token:
                before_token.pop()()

    async def on_response(response: httpx.Response) -> None:
        if response.request.url.path == "/api/token" and response.status_code == 200:
            await response.aread()
            issued.append(str(response.json()["refresh_token"]))

    hooks: dict[str, list[Callable[..., Any]]] = {
        "request": [on_request],
        "response": [on_response],
    }
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, event_hooks=hooks) as http:
        client = SpotifyClient(
            http,
            client_id="cid",
            client_secret=SecretStr("csecret"),
            accounts_url=BASE,
            api_url=f"{BASE}/v1",
            clock=clock,
        )
        store = FlakyStore(path, cipher=TokenCipher(KEY))
        await store.open()
        account = Account("demo", "Demo", grant.refresh_token, frozenset(grant.scopes), 0.0)
        await store.put_account(account)
        coord = Unlockable()
        tokens = TokenManager(client, store, clock, coord=coord)
        try:
            yield Rig(sim, clock, client, store, coord, tokens, presented, issued, before_token)
        finally:
            await store.close()


# -- a rotated refresh token is never lost to a failing store -----------------------------------


async def test_refused_rotation_is_kept_used_and_written_at_the_next_request(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """The store refuses the rotated token once: the new access token serves, the token is
    written at the next token request, and no log line carries it."""
    caplog.set_level(logging.DEBUG)
    first = rig.issued[0]
    rig.store.fail = 1
    token = await rig.tokens.token("demo")
    assert rig.presented == [first]
    assert rig.store.refused == 1
    assert await rig.store.stored_token() == first  # the store still holds the rotated-away one
    assert rig.tokens.counts["unsaved"] == 1
    assert any("refused a rotated refresh token" in r.getMessage() for r in caplog.records)

    await rig.playing()  # the new access token works; this request writes the kept token
    assert await rig.tokens.token("demo") is token  # no second refresh was needed
    assert rig.sim.calls["token:refresh_token"] == 1
    assert await rig.store.stored_token() == rig.issued[-1] != first
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert not any(t in logged for t in rig.issued)


@pytest.mark.parametrize("failures", [1, 2, 5])
async def test_a_failing_store_never_loses_the_grant(rig: Rig, failures: int) -> None:
    """The store refuses ``failures`` writes while the access token expires hour after hour:
    a rotated token it refused is kept, and no refresh is made until the store has taken it
    (each such hour is deferred: stale, not lost); every refresh presents the latest token,
    the account stays connected, and the store ends with the latest token."""
    rig.store.fail = failures
    deferred = 0
    for _ in range(failures + 2):
        await rig.clock.advance(HOUR)
        try:
            await rig.playing()
        except RefreshDeferred:
            deferred += 1
    assert rig.store.refused == failures
    assert deferred == failures - 1  # the first refusal is of the rotated token itself
    assert rig.sim.calls["token:refresh_token"] == failures + 2 - deferred
    assert rig.presented == rig.issued[:-1]  # each presented once, the one handed out last
    assert rig.store.statuses == []
    account = await rig.store.get_account("demo")
    assert account is not None
    assert account.status is AccountStatus.ACTIVE
    assert account.refresh_token == rig.issued[-1]


async def test_a_kept_token_is_never_presented_while_the_store_still_refuses(rig: Rig) -> None:
    """The store down across an expiry: no refresh is made (its successor could not be stored
    either); once the store answers, the kept token is written, then presented."""
    stored = rig.issued[0]
    rig.store.fail = 100
    first = await rig.tokens.token("demo")
    assert await rig.tokens.token("demo") is first  # the write is retried, no refresh made
    await rig.clock.advance(HOUR)
    with pytest.raises(RefreshDeferred):
        await rig.playing()
    assert rig.presented == [stored]
    assert await rig.store.stored_token() == stored
    rig.store.fail = 0
    await rig.playing()
    assert rig.presented == [stored, rig.issued[1]]
    assert await rig.store.stored_token() == rig.issued[2]
    assert rig.sim.calls["token:refresh_token"] == 2
    assert rig.store.statuses == []


async def test_a_kept_token_is_written_at_shutdown(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """The store refused the rotated token; at shutdown it takes it (a restart presents it).
    One it still refuses is counted in an error line that names no token."""
    rig.store.fail = 1
    await rig.tokens.token("demo")
    assert await rig.store.stored_token() == rig.issued[0]
    await rig.tokens.flush()
    assert await rig.store.stored_token() == rig.issued[-1]
    await rig.clock.advance(HOUR)
    rig.store.fail = 100
    await rig.playing()
    await rig.tokens.flush()
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("1 rotated refresh token(s) could not be stored" in m for m in errors)
    assert not any(t in " ".join(errors) for t in rig.issued)


async def test_a_newer_grant_is_never_overwritten_by_a_kept_token(rig: Rig) -> None:
    """A connect made by another process while a rotated token waits: the store's new grant
    wins; the kept token is neither written over it nor presented."""
    rig.store.fail = 100
    await rig.tokens.token("demo")  # the rotated token is kept in memory
    grant = rig.sim.grant("demo")  # `nowplaying login` elsewhere writes a new grant
    assert grant.refresh_token
    rig.store.fail = 0
    await rig.store.set_refresh_token("demo", grant.refresh_token)
    await rig.tokens.token("demo")  # the next request: nothing to write over the new grant
    assert await rig.store.stored_token() == grant.refresh_token
    await rig.clock.advance(HOUR)
    await rig.playing()
    assert rig.presented[-1] == grant.refresh_token
    assert await rig.store.stored_token() == rig.issued[-1]


async def test_a_revoked_grant_is_still_final(rig: Rig) -> None:
    """invalid_grant marks the account reconnect-required once; no retry, no refresh after."""
    rig.sim.revoke("demo")
    with pytest.raises(InvalidGrant):
        await rig.tokens.token("demo")
    assert rig.store.statuses == [AccountStatus.RECONNECT_REQUIRED]
    with pytest.raises(AccountGone):
        await rig.tokens.token("demo")
    assert rig.sim.calls["token:refresh_token"] == 1


async def test_a_widget_without_spotify_has_no_grant_to_refresh(rig: Rig) -> None:
    """A widget made by signing in with Last.fm: AccountGone, and no call to Spotify."""
    await rig.store.delete_source("demo", SourceKind.SPOTIFY)
    with pytest.raises(AccountGone):
        await rig.tokens.token("demo")
    assert rig.sim.calls["token"] == 0
    assert rig.presented == []


async def test_key_missing_account_is_never_refreshed_nor_written(
    tmp_path: Path, clock: FakeClock, rig: Rig
) -> None:
    """An account sealed with a key that is not configured: AccountGone, no token call, no
    write; with the old key configured again it is back, still active."""
    path = tmp_path / "np.sqlite3"
    old = SQLiteStore(path, cipher=TokenCipher(OLD_KEY))
    await old.open()
    account = await rig.store.get_account("demo")
    assert account is not None
    await old.put_account(account)
    await old.close()
    store = FlakyStore(path, cipher=TokenCipher(KEY))
    await store.open()
    try:
        seen = await store.get_account("demo")
        assert seen is not None
        assert seen.key_missing
        tokens = TokenManager(rig.client, store, clock, coord=rig.coord)
        for _ in range(2):
            with pytest.raises(AccountGone):
                await tokens.token("demo")
        assert rig.presented == []
        assert rig.sim.calls["token"] == 0
        assert store.statuses == []
        assert store.refused == 0
    finally:
        await store.close()
    back = SQLiteStore(path, cipher=TokenCipher(KEY, [OLD_KEY]))
    await back.open()
    try:
        restored = await back.get_account("demo")
        assert restored is not None
        assert not restored.key_missing
        assert restored.status is AccountStatus.ACTIVE
        assert restored.refresh_token == rig.issued[0]
    finally:
        await back.close()


# -- no refresh without the lock ---------------------------------------------------------------


async def test_no_lock_and_no_valid_token_defers_the_refresh(rig: Rig) -> None:
    """The lock cannot be had and nothing valid is known: RefreshDeferred (transient, a
    SpotifyUnavailable), no token call; once the lock works again, one refresh."""
    rig.coord.broken = True
    with pytest.raises(RefreshDeferred) as caught:
        await rig.playing()
    assert isinstance(caught.value, SpotifyUnavailable)
    assert isinstance(caught.value.__cause__, CoordinationError)
    assert rig.sim.calls["token"] == 0
    assert rig.tokens.counts["deferred"] == 1
    rig.coord.broken = False
    await rig.playing()
    assert rig.sim.calls["token:refresh_token"] == 1


async def test_no_lock_an_expired_token_is_not_refreshed(rig: Rig) -> None:
    """The cached and shared token expire while the lock cannot be had: deferred, no call."""
    await rig.playing()
    rig.coord.broken = True
    await rig.clock.advance(HOUR)
    with pytest.raises(RefreshDeferred):
        await rig.playing()
    assert rig.sim.calls["token:refresh_token"] == 1


async def test_no_lock_a_cached_or_shared_token_still_serves(rig: Rig) -> None:
    """Without the lock, a valid token cached here serves (without trying the lock), and one
    another instance shared serves a manager that has none."""
    await rig.playing()
    attempts = rig.coord.attempts
    rig.coord.broken = True
    await rig.playing()  # cached here
    assert rig.coord.attempts == attempts
    other = rig.manager()
    await rig.playing(other)  # shared by the first instance
    assert rig.sim.calls["token:refresh_token"] == 1
    assert rig.coord.attempts == attempts + 1
    assert other.counts["deferred"] == 0


async def test_no_lock_a_kept_token_waits_and_the_access_token_serves(rig: Rig) -> None:
    """A rotated token kept in memory is not written without the lock, and its access token
    serves meanwhile; the write happens once the lock is back."""
    rig.store.fail = 1
    await rig.playing()
    rig.coord.broken = True
    await rig.playing()
    assert await rig.store.stored_token() == rig.issued[0]
    rig.coord.broken = False
    await rig.playing()
    assert await rig.store.stored_token() == rig.issued[1]
    assert rig.sim.calls["token:refresh_token"] == 1


# -- a real full filesystem ---------------------------------------------------------------------


async def test_a_full_disk_defers_the_refresh_and_loses_no_grant(
    clock: FakeClock, small_disk: Path
) -> None:
    """SQLite on a full filesystem, the access token expires, Spotify rotates on refresh: no
    refresh is made (stale, not lost). Space freed, the grant refreshes and rotates, and the
    store opened again (a restart) holds the latest refresh token."""
    db = small_disk / "nowplaying.sqlite3"
    async with _rig(clock, db) as rig:
        await rig.playing()
        filler = fill(small_disk)
        await rig.clock.advance(HOUR)
        with pytest.raises(RefreshDeferred):
            await rig.playing()
        assert rig.sim.calls["token:refresh_token"] == 1  # the first, before the disk filled
        assert rig.tokens.counts["unwritable"] == 1
        assert rig.store.refused == 0 and rig.tokens.counts["unsaved"] == 0
        filler.unlink()
        await rig.playing()
        assert rig.presented == rig.issued[:2]
        latest = rig.issued[-1]
    store = SQLiteStore(db, cipher=TokenCipher(KEY))
    await store.open()
    try:
        account = await store.get_account("demo")
    finally:
        await store.close()
    assert account is not None and account.status is AccountStatus.ACTIVE
    assert account.refresh_token == latest


async def test_a_token_rotated_onto_a_full_disk_survives_a_restart(
    clock: FakeClock, small_disk: Path
) -> None:
    """The disk fills while a refresh is on its way (after the store's check): the store
    refuses the rotated token, which is kept sealed in the file reserved beside it. Shut down
    still full, space freed, started again: the kept token goes into the store first, the next
    refresh presents it and Spotify takes it (the rotated-away one would be invalid_grant)."""
    db = small_disk / "nowplaying.sqlite3"
    kept_path = small_disk / "nowplaying.sqlite3.kept-tokens"
    cipher = TokenCipher(KEY)
    async with _rig(clock, db) as rig:
        tokens = TokenManager(rig.client, rig.store, clock, kept=KeptTokens(kept_path, cipher))
        assert await tokens.restore() == 0
        await rig.playing(tokens)
        await clock.advance(HOUR)
        fillers: list[Path] = []
        rig.before_token.append(lambda: fillers.append(fill(small_disk)))
        await rig.playing(tokens)  # refreshed; the store refuses the rotated token
        assert tokens.counts["unsaved"] == 1 and fillers
        rotated = rig.issued[-1]
        assert await rig.store.stored_token() == rig.issued[-2]
        await tokens.flush()  # SIGTERM while the disk is still full
        await rig.store.close()
        fillers[0].unlink()
        rig.store = FlakyStore(db, cipher=cipher)  # the restart
        await rig.store.open()
        again = TokenManager(rig.client, rig.store, clock, kept=KeptTokens(kept_path, cipher))
        assert await again.restore() == 1
        assert await rig.store.stored_token() == rotated
        await clock.advance(HOUR)
        await rig.playing(again)
        assert rig.presented[-1] == rotated
        assert rig.presented == rig.issued[:-1]  # each token presented once, none lost
        assert rig.store.statuses == []  # never marked reconnect required
        assert KeptTokens(kept_path, cipher).open() == {}  # taken by the store, kept no more
        await rig.store.close()


async def _admin(*statements: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _read_only(db: str, on: bool) -> None:
    """Make the database refuse writes (or take them again), for every session: its default
    changed and the sessions open on it ended (the store's pool opens new ones)."""
    setting = "SET default_transaction_read_only = on" if on else "RESET"
    if not on:
        setting += " default_transaction_read_only"
    ended = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'"
    run_async(_admin(f"ALTER DATABASE {db} {setting}", ended.format(db)))


async def test_a_token_rotated_while_postgresql_turns_read_only_survives_a_restart(
    clock: FakeClock, tmp_path: Path
) -> None:
    """PostgreSQL starts refusing writes (read-only) while a refresh is on its way: the rotated
    token is kept beside it, survives the restart, and goes into the database first."""
    require(POSTGRES_URL, "PostgreSQL")
    db = f"np_kept_{secrets.token_hex(4)}"
    await _admin(f"CREATE DATABASE {db}")
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{db}"
    kept_path, cipher = tmp_path / "kept-tokens", TokenCipher(KEY)
    try:
        async with _rig(clock, ":memory:") as rig:
            grant = await rig.store.get_account("demo")
            assert grant is not None
            store = PostgresStore(url, cipher=cipher)
            await store.open()
            await store.put_account(grant)
            tokens = TokenManager(rig.client, store, clock, kept=KeptTokens(kept_path, cipher))
            await tokens.restore()
            await clock.advance(HOUR)
            rig.before_token.append(lambda: _read_only(db, on=True))
            await rig.playing(tokens)
            assert tokens.counts["unsaved"] == 1
            await tokens.flush()  # shutdown, the database still read-only
            await store.close()
            _read_only(db, on=False)
            store = PostgresStore(url, cipher=cipher)  # the restart
            await store.open()
            again = TokenManager(rig.client, store, clock, kept=KeptTokens(kept_path, cipher))
            assert await again.restore() == 1
            account = await store.get_account("demo")
            assert account is not None and account.refresh_token == rig.issued[-1]
            await clock.advance(HOUR)
            await rig.playing(again)
            assert rig.presented == rig.issued[:-1]
            account = await store.get_account("demo")
            assert account is not None and account.status is AccountStatus.ACTIVE
            await store.close()
    finally:
        await _admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
