"""The storage contract. Every backend runs this same suite."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import aiosqlite
import asyncpg
import pytest
from harness.accounts import account
from harness.services import POSTGRES_URL, postgres_schema
from harness.stores import STORE_KEY

from nowplaying.crypto import TokenCipher
from nowplaying.models import QUOTA_EXCEEDED, SourceKind
from nowplaying.store import (
    AccountStatus,
    Delivery,
    LoginState,
    Pause,
    PostgresStore,
    Session,
    SourceLink,
    SQLiteStore,
    Store,
    StoreError,
    Webhook,
    links,
    open_store,
    sql,
)
from nowplaying.store import sqlite as sqlite_module
from nowplaying.store.links import SEALED_SECRETS
from nowplaying.store.sql import POSTGRES, SQLITE

KEY = STORE_KEY
OLD_KEY = "old-store-key-" * 3


def lastfm(aid: str = "alice", secret: str = "lastfm-session-1") -> SourceLink:
    return SourceLink(aid, SourceKind.LASTFM, "alice_fm", secret, connected_at=2000.0)


pytestmark = pytest.mark.anyio


async def test_account_round_trip(store: Store) -> None:
    """An account comes back as it went in, refresh token included."""
    await store.put_account(account())
    got = await store.get_account("alice")
    assert got == account()
    assert await store.get_account("nobody") is None


async def test_put_account_updates(store: Store) -> None:
    """Putting an account again replaces it (a reconnect)."""
    await store.put_account(account())
    await store.put_account(account(token="refresh-2", display_name="Alice B"))
    got = await store.get_account("alice")
    assert got is not None and got.refresh_token == "refresh-2" and got.display_name == "Alice B"
    assert len(await store.list_accounts()) == 1


async def test_refresh_token_and_status_updates(store: Store) -> None:
    """Rotation and reconnect marks are stored."""
    await store.put_account(account())
    await store.set_refresh_token("alice", "refresh-rotated")
    await store.set_status("alice", AccountStatus.RECONNECT_REQUIRED)
    got = await store.get_account("alice")
    assert got is not None
    assert got.refresh_token == "refresh-rotated"
    assert got.status is AccountStatus.RECONNECT_REQUIRED


async def test_public_id_lookup(store: Store) -> None:
    """An account is found by its public id, and not after the id is cleared."""
    await store.put_account(account())
    await store.set_public_id("alice", "pub-123")
    found = await store.get_account_by_public_id("pub-123")
    assert found is not None and found.id == "alice"
    await store.set_public_id("alice", None)
    assert await store.get_account_by_public_id("pub-123") is None


class CountingCipher(TokenCipher):
    """A cipher that counts how many tokens it decrypts."""

    opened = 0

    def open(self, sealed: str, *, context: str) -> str:
        self.opened += 1
        return super().open(sealed, context=context)


async def test_read_paths_leave_the_token_sealed(reopen: Reopen) -> None:
    """get_account_info and get_account_by_public_id decrypt nothing: the token reads as empty,
    everything else as stored; get_account still opens it (the refresh path)."""
    cipher = CountingCipher(KEY)
    s = await reopen(cipher)
    await s.put_account(account(public_id="pub-1", status=AccountStatus.RECONNECT_REQUIRED))
    expected = account(token="", public_id="pub-1", status=AccountStatus.RECONNECT_REQUIRED)
    assert await s.get_account_info("alice") == expected
    assert await s.get_account_by_public_id("pub-1") == expected
    assert await s.get_account_info("nobody") is None
    assert cipher.opened == 0
    got = await s.get_account("alice")
    assert got is not None and got.refresh_token == "refresh-1" and cipher.opened == 1


async def test_writing_back_a_sealed_read_keeps_the_token(store: Store) -> None:
    """An account read without its token, put back, keeps the stored token and status."""
    await store.put_account(account(status=AccountStatus.RECONNECT_REQUIRED))
    info = await store.get_account_info("alice")
    assert info is not None and info.refresh_token == ""
    await store.put_account(replace(info, display_name="Alice D", status=AccountStatus.ACTIVE))
    got = await store.get_account("alice")
    assert got == account(display_name="Alice D", status=AccountStatus.RECONNECT_REQUIRED)


async def test_delete_account_removes_its_sessions(store: Store) -> None:
    """Deleting an account forgets its token and ends its sessions."""
    await store.put_account(account())
    await store.put_session(Session("s1", "alice", 1.0, 1.0))
    await store.delete_account("alice")
    assert await store.get_account("alice") is None
    assert await store.get_session("s1") is None


async def test_sessions(store: Store) -> None:
    """Sessions are stored, touched and deleted, one by one or per account."""
    await store.put_account(account())
    await store.put_session(Session("s1", "alice", 1.0, 1.0))
    await store.put_session(Session("s2", "alice", 1.0, 1.0))
    await store.touch_session("s1", 50.0)
    got = await store.get_session("s1")
    assert got is not None and got.last_seen == 50.0
    await store.delete_session("s1")
    assert await store.get_session("s1") is None
    await store.delete_sessions_of("alice")
    assert await store.get_session("s2") is None


async def test_login_state_is_single_use(store: Store) -> None:
    """A pending login is taken once; the second take finds nothing."""
    login = LoginState("st", "verifier", "browser", 10.0, frozenset({"a", "b"}))
    await store.put_login(login)
    assert await store.take_login("st") == login
    assert await store.take_login("st") is None


async def test_purge_old_logins(store: Store) -> None:
    """Abandoned logins are purged by age."""
    await store.put_login(LoginState("old", "v", "b", 10.0))
    await store.put_login(LoginState("new", "v", "b", 100.0))
    assert await store.purge_logins(older_than=50.0) == 1
    assert await store.take_login("old") is None
    assert await store.take_login("new") is not None


async def test_refresh_token_is_ciphertext_on_disk(tmp_path: Path) -> None:
    """The SQLite file holds the refresh token sealed, never in the clear."""
    path = tmp_path / "np.sqlite3"
    s = SQLiteStore(path, cipher=TokenCipher(KEY))
    await s.open()
    await s.put_account(account(token="super-secret-refresh"))
    await s.close()
    raw = path.read_bytes() + (
        Path(f"{path}-wal").read_bytes() if Path(f"{path}-wal").exists() else b""
    )
    assert b"super-secret-refresh" not in raw
    with sqlite3.connect(path) as db:
        (sealed,) = db.execute("SELECT secret FROM sources").fetchone()
    assert sealed.startswith("v1:")


async def test_reseal_after_key_rotation(tmp_path: Path) -> None:
    """Re-sealing moves every row to the new key; the old key is then no longer needed."""
    path = tmp_path / "np.sqlite3"
    s = SQLiteStore(path, cipher=TokenCipher("old-key-" * 5))
    await s.open()
    await s.put_account(account())
    await s.close()
    s = SQLiteStore(path, cipher=TokenCipher(KEY, ["old-key-" * 5]))
    await s.open()
    assert await s.reseal_all() == 1
    assert await s.reseal_all() == 0
    await s.close()
    s = SQLiteStore(path, cipher=TokenCipher(KEY))
    await s.open()
    got = await s.get_account("alice")
    await s.close()
    assert got is not None and got.refresh_token == "refresh-1"


async def test_migrations_are_idempotent(tmp_path: Path) -> None:
    """Opening an existing database runs no migration twice."""
    path = tmp_path / "np.sqlite3"
    for _ in range(2):
        s = SQLiteStore(path, cipher=TokenCipher(KEY))
        await s.open()
        await s.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] >= 1


async def test_unsupported_url() -> None:
    """An unknown database URL is a clear StoreError."""
    with pytest.raises(StoreError, match="unsupported"):
        open_store("mysql://x", cipher=TokenCipher(KEY))


async def test_closed_store_raises_store_error(tmp_path: Path) -> None:
    """Using a store that is not open raises StoreError, not AttributeError."""
    s = SQLiteStore(tmp_path / "x.sqlite3", cipher=TokenCipher(KEY))
    with pytest.raises(StoreError):
        await s.get_account("a")


async def test_postgres_migrates_once_and_reopens() -> None:
    """Two stores opening one schema together migrate it once; data survives a reopen."""
    async for schema in postgres_schema():
        a = PostgresStore(POSTGRES_URL, cipher=TokenCipher(KEY), schema=schema)
        b = PostgresStore(POSTGRES_URL, cipher=TokenCipher(KEY), schema=schema)
        await asyncio.gather(a.open(), b.open())
        await a.put_account(account())
        await a.close()
        await b.close()
        c = PostgresStore(POSTGRES_URL, cipher=TokenCipher(KEY), schema=schema)
        await c.open()
        assert (await c.get_account("alice")) == account()
        await c.close()


async def test_postgres_down_is_a_store_error() -> None:
    """An unreachable PostgreSQL raises StoreError, with no secret in the message."""
    s = PostgresStore("postgresql://postgres:pw-secret@127.0.0.1:1/x", cipher=TokenCipher(KEY))
    with pytest.raises(StoreError) as info:
        await s.open()
    assert "pw-secret" not in str(info.value)


# -- reopening one database (a restart, a key rotation) ------------------------------------------

Reopen = Callable[[TokenCipher], Awaitable[Store]]


@pytest.fixture(params=["sqlite-file", "postgres"])
async def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Reopen]:
    """Opens the same database again, with the cipher given; closes whatever it opened."""
    opened: list[Store] = []

    def opener(make: Callable[[TokenCipher], Store]) -> Reopen:
        async def go(cipher: TokenCipher) -> Store:
            s = make(cipher)
            await s.open()
            opened.append(s)
            return s

        return go

    try:
        if request.param == "postgres":
            async for schema in postgres_schema():
                yield opener(functools.partial(_postgres, schema))
                for s in opened:
                    await s.close()
            return
        yield opener(lambda c: SQLiteStore(tmp_path / "np.sqlite3", cipher=c))
    finally:
        for s in opened:
            await s.close()


def _postgres(schema: str, cipher: TokenCipher) -> Store:
    return PostgresStore(POSTGRES_URL, cipher=cipher, schema=schema)


# -- the durable app-wide pause ------------------------------------------------------------------


async def test_pause_round_trip(store: Store) -> None:
    """No pause at first; a stored pause comes back, and a new one replaces it."""
    assert await store.get_pause() is None
    await store.set_pause(Pause(until=1_000.5))
    assert await store.get_pause() == Pause(until=1_000.5, reason="rate_limit")
    await store.set_pause(Pause(until=21_000.0, reason=QUOTA_EXCEEDED))
    got = await store.get_pause()
    assert got == Pause(until=21_000.0, reason=QUOTA_EXCEEDED) and got.quota


async def test_pause_survives_a_restart(reopen: Reopen) -> None:
    """The pause is read back by the next process to open the database."""
    first = await reopen(TokenCipher(KEY))
    await first.set_pause(Pause(until=1e9 + 0.25, reason=QUOTA_EXCEEDED))
    await first.close()
    second = await reopen(TokenCipher(KEY))
    assert await second.get_pause() == Pause(until=1e9 + 0.25, reason=QUOTA_EXCEEDED)


async def test_damaged_pause_reads_as_none(tmp_path: Path) -> None:
    """A pause row nobody can read is no pause, not a crash."""
    path = tmp_path / "np.sqlite3"
    s = SQLiteStore(path, cipher=TokenCipher(KEY))
    await s.open()
    await s.close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO app_state VALUES ('pause', '{\"until\": \"soon\"}')")
    db.close()
    await s.open()
    try:
        assert await s.get_pause() is None
    finally:
        await s.close()


# -- accounts sealed with a key that is not configured ------------------------------------------


async def test_unknown_key_reads_as_reconnect_required(reopen: Reopen) -> None:
    """Sealed with the old key, opened with a new one only: every read says reconnect, none
    raises; adding the old key back restores the account with its token."""
    old = await reopen(TokenCipher(OLD_KEY))
    await old.put_account(account(public_id="pub-1", show_last_played=True))
    await old.put_account(account("bob", token="refresh-bob"))
    await old.close()

    new_only = await reopen(TokenCipher(KEY))
    got = await new_only.get_account("alice")
    assert got is not None
    assert got.key_missing and got.reconnect_reason == "unknown_key"
    assert got.status is AccountStatus.RECONNECT_REQUIRED and got.refresh_token == ""
    assert got.public_id == "pub-1" and got.show_last_played
    assert await new_only.get_account_by_public_id("pub-1") == got
    assert await new_only.get_account_info("alice") == got
    listed = await new_only.list_accounts()
    assert [a.id for a in listed] == ["alice", "bob"] and all(a.key_missing for a in listed)
    assert await new_only.reseal_all() == 0
    # Writing a key_missing account back keeps its sealed token and stored status.
    await new_only.put_account(listed[1])
    await new_only.set_show_last_played("alice", False)
    await new_only.close()

    with_old = await reopen(TokenCipher(KEY, [OLD_KEY]))
    assert await with_old.get_account("alice") == account(public_id="pub-1")
    assert await with_old.get_account("bob") == account("bob", token="refresh-bob")


async def test_reseal_skips_unknown_keys_and_moves_the_rest(reopen: Reopen) -> None:
    """reseal_all re-seals what a configured key opens and leaves the other rows intact."""
    third = "third-store-key-" * 3
    s = await reopen(TokenCipher(OLD_KEY))
    await s.put_account(account())
    await s.close()
    s = await reopen(TokenCipher(third))
    await s.put_account(account("bob", token="refresh-bob"))
    await s.close()

    s = await reopen(TokenCipher(KEY, [OLD_KEY]))
    assert await s.reseal_all() == 1
    assert [a.key_missing for a in await s.list_accounts()] == [False, True]
    await s.close()
    s = await reopen(TokenCipher(KEY, [third]))
    assert await s.get_account("alice") == account()
    assert await s.get_account("bob") == account("bob", token="refresh-bob")


async def test_empty_refresh_token_is_refused(store: Store) -> None:
    """No path stores an empty refresh token over a real one."""
    await store.put_account(account())
    with pytest.raises(ValueError, match="empty refresh token"):
        await store.set_refresh_token("alice", "")
    got = await store.get_account("alice")
    assert got is not None and got.refresh_token == "refresh-1"


class Rotating:
    """Rotates alice's token between reseal_all's read and its write (another refresh)."""

    async def _fetch(self, sql: str, *args: object) -> list[Any]:
        found = await super()._fetch(sql, *args)  # type: ignore[misc]
        if sql == SEALED_SECRETS:
            await self.set_refresh_token("alice", "rotated-meanwhile")  # type: ignore[attr-defined]
        return cast("list[Any]", found)


class RotatingSQLite(Rotating, SQLiteStore):
    pass


class RotatingPostgres(Rotating, PostgresStore):
    pass


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_reseal_never_overwrites_a_rotated_token(backend: str, tmp_path: Path) -> None:
    """A token rotated while reseal_all runs is kept, not replaced by the one it read."""
    path = tmp_path / "np.sqlite3"
    async for schema in postgres_schema() if backend == "postgres" else _no_schema():
        plain: Store
        racing: Store
        if backend == "postgres":
            plain = PostgresStore(POSTGRES_URL, cipher=TokenCipher(OLD_KEY), schema=schema)
            racing = RotatingPostgres(
                POSTGRES_URL, cipher=TokenCipher(KEY, [OLD_KEY]), schema=schema
            )
        else:
            plain = SQLiteStore(path, cipher=TokenCipher(OLD_KEY))
            racing = RotatingSQLite(path, cipher=TokenCipher(KEY, [OLD_KEY]))
        await plain.open()
        await plain.put_account(account())
        await plain.close()
        await racing.open()
        try:
            assert await racing.reseal_all() == 0
            got = await racing.get_account("alice")
            assert got is not None and got.refresh_token == "rotated-meanwhile"
        finally:
            await racing.close()


async def _no_schema() -> AsyncIterator[str]:
    yield ""


# -- every failure is a StoreError ---------------------------------------------------------------

CALLS: dict[str, Callable[[Store], Awaitable[object]]] = {
    "get_account": lambda s: s.get_account("alice"),
    "get_account_info": lambda s: s.get_account_info("alice"),
    "get_account_by_public_id": lambda s: s.get_account_by_public_id("pub-1"),
    "list_accounts": lambda s: s.list_accounts(),
    "put_account": lambda s: s.put_account(account(display_name="Alice C")),
    "ensure_writable": lambda s: s.ensure_writable("alice"),
    "set_refresh_token": lambda s: s.set_refresh_token("alice", "refresh-9"),
    "set_status": lambda s: s.set_status("alice", AccountStatus.RECONNECT_REQUIRED),
    "set_public_id": lambda s: s.set_public_id("alice", "pub-2"),
    "set_show_last_played": lambda s: s.set_show_last_played("alice", True),
    "delete_account": lambda s: s.delete_account("alice"),
    "put_session": lambda s: s.put_session(Session("s2", "alice", 2.0, 2.0)),
    "get_session": lambda s: s.get_session("s1"),
    "touch_session": lambda s: s.touch_session("s1", 9.0),
    "delete_session": lambda s: s.delete_session("s1"),
    "delete_sessions_of": lambda s: s.delete_sessions_of("alice"),
    "put_login": lambda s: s.put_login(LoginState("st2", "v", "b", 5.0)),
    "take_login": lambda s: s.take_login("st"),
    "purge_logins": lambda s: s.purge_logins(older_than=100.0),
    "get_pause": lambda s: s.get_pause(),
    "set_pause": lambda s: s.set_pause(Pause(until=5.0)),
    "reseal_all": lambda s: s.reseal_all(),
    "put_source": lambda s: s.put_source(lastfm()),
    "get_source": lambda s: s.get_source("alice", SourceKind.SPOTIFY),
    "list_sources": lambda s: s.list_sources("alice"),
    "delete_source": lambda s: s.delete_source("alice", SourceKind.SPOTIFY),
    "add_widget": lambda s: s.add_widget(
        account("lastfm:bob", "", spotify=False),
        SourceLink("lastfm:bob", SourceKind.LASTFM, "bob", "sk", 1.0),
    ),
    "account_of_source": lambda s: s.account_of_source(SourceKind.SPOTIFY, "alice"),
    "list_links": lambda s: s.list_links(SourceKind.SPOTIFY),
    "set_push_token": lambda s: s.set_push_token("alice", "push-2"),
    "get_push_token": lambda s: s.get_push_token("alice"),
    "account_of_push_token": lambda s: s.account_of_push_token("push-1"),
    "put_webhook": lambda s: s.put_webhook(Webhook("wh9", "alice", "https://h.test/", "k", 1.0)),
    "list_webhooks": lambda s: s.list_webhooks("alice"),
    "delete_webhook": lambda s: s.delete_webhook("alice", "wh1"),
    "claim_delivery": lambda s: s.claim_delivery(Delivery("wh1", "e", "x", 1.0, "pending", 0, "")),
    "update_delivery": lambda s: s.update_delivery(Delivery("wh1", "e", "x", 1.0, "failed", 1, "")),
    "list_deliveries": lambda s: s.list_deliveries("wh1"),
    "prune_deliveries": lambda s: s.prune_deliveries("wh1", 5.0),
}
READS = {
    "get_account",
    "get_account_info",
    "get_account_by_public_id",
    "list_accounts",
    "get_session",
    "get_pause",
    "get_source",
    "list_sources",
    "account_of_source",
    "list_links",
    "get_push_token",
    "account_of_push_token",
    "list_webhooks",
    "list_deliveries",
}
#: Every public method of the Store protocol (open and close, the life cycle, are tested apart).
#: The failure contract is parametrized over this list, not over CALLS, so a method added to the
#: protocol without a call below fails here instead of escaping the contract.
METHODS = sorted(n for n in vars(Store) if not n.startswith("_") and n not in {"open", "close"})
WRITES = sorted(set(METHODS) - READS)  # reseal_all writes when a row is stale (fill_stale)


def call(method: str) -> Callable[[Store], Awaitable[object]]:
    if method not in CALLS:
        pytest.fail(f"Store.{method} has no entry in CALLS: the failure contract must cover it")
    return CALLS[method]


def test_calls_cover_the_protocol() -> None:
    """CALLS names nothing the Store protocol lacks (and METHODS covers what it has)."""
    assert set(CALLS) == set(METHODS)


async def fill(store: Store) -> None:
    await store.put_account(account(public_id="pub-1"))
    await store.put_session(Session("s1", "alice", 1.0, 1.0))
    await store.put_login(LoginState("st", "v", "b", 1.0))
    await store.set_pause(Pause(until=1.0))
    await store.set_push_token("alice", "push-1")
    await store.put_webhook(Webhook("wh1", "alice", "https://h.test/", "k", 1.0))


async def _drop_postgres_schema(store: Store) -> None:
    assert isinstance(store, PostgresStore)
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f"DROP SCHEMA {store.schema} CASCADE")
    finally:
        await conn.close()


async def _drop_sqlite_tables(store: Store) -> None:
    assert isinstance(store, SQLiteStore)
    with sqlite3.connect(store.path) as db:
        db.executescript(
            "PRAGMA foreign_keys = OFF;"
            " DROP TABLE sessions; DROP TABLE logins; DROP TABLE accounts; DROP TABLE app_state;"
            " DROP TABLE sources; DROP TABLE push_tokens;"
            " DROP TABLE webhook_deliveries; DROP TABLE webhooks;"
        )
    db.close()


async def _close_under_it(store: Store) -> None:
    if isinstance(store, PostgresStore):
        store._pool.terminate()
    else:
        assert isinstance(store, SQLiteStore) and store._db is not None
        await store._db.close()


async def _close(store: Store) -> None:
    await store.close()


BREAKERS: dict[str, Callable[[Store], Awaitable[None]]] = {
    "connection-closed-under-it": _close_under_it,
    "store-closed": _close,
    "tables-gone": _drop_sqlite_tables,
    "schema-dropped": _drop_postgres_schema,
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("store", "breaker"),
    [
        ("sqlite-file", "connection-closed-under-it"),
        ("sqlite-file", "store-closed"),
        ("sqlite-file", "tables-gone"),
        ("sqlite-memory", "connection-closed-under-it"),
        ("sqlite-memory", "store-closed"),
        ("postgres", "connection-closed-under-it"),
        ("postgres", "store-closed"),
        ("postgres", "schema-dropped"),
    ],
    indirect=["store"],
)
async def test_a_failing_backend_raises_store_error(
    store: Store, breaker: str, method: str
) -> None:
    """Once the database fails, each public method raises StoreError (the web layer's 503),
    never a driver error."""
    await fill(store)
    await BREAKERS[breaker](store)
    with pytest.raises(StoreError):
        await call(method)(store)


#: Writes that break a constraint of the schema: each is a StoreError, and the store goes on.
VIOLATIONS: dict[str, Callable[[Store], Awaitable[object]]] = {
    "session-of-unknown-account": lambda s: s.put_session(Session("s9", "nobody", 1.0, 1.0)),
    "public-id-taken-by-put": lambda s: s.put_account(account("bob", public_id="pub-1")),
    "public-id-taken-by-update": lambda s: s.put_account(
        account("bob", token="", public_id="pub-1")
    ),
    "public-id-taken-by-set": lambda s: s.set_public_id("bob", "pub-1"),
    "login-state-reused": lambda s: s.put_login(LoginState("st", "v2", "b2", 2.0)),
}


@pytest.mark.parametrize("violation", sorted(VIOLATIONS))
async def test_a_constraint_violation_is_a_store_error(store: Store, violation: str) -> None:
    """A write the schema refuses raises StoreError, changes nothing, and the store goes on."""
    await fill(store)
    await store.put_account(account("bob", token="refresh-bob"))
    with pytest.raises(StoreError):
        await VIOLATIONS[violation](store)
    assert await store.get_account("alice") == account(public_id="pub-1")
    assert await store.get_account("bob") == account("bob", token="refresh-bob")
    assert await store.get_session("s9") is None
    assert await store.take_login("st") == LoginState("st", "v", "b", 1.0)


async def fill_stale(path: Path) -> SQLiteStore:
    """A filled file whose account is sealed with the old key (so reseal_all has a row to
    write), opened with the current key and no busy wait."""
    old = SQLiteStore(path, cipher=TokenCipher(OLD_KEY))
    await old.open()
    await fill(old)
    await old.close()
    s = SQLiteStore(path, cipher=TokenCipher(KEY, [OLD_KEY]), busy_timeout=0)
    await s.open()
    return s


@pytest.mark.parametrize("method", WRITES)
async def test_read_only_sqlite_fails_writes_as_store_errors(tmp_path: Path, method: str) -> None:
    """A database that refuses writes fails each write with StoreError; reads go on."""
    s = await fill_stale(tmp_path / "np.sqlite3")
    try:
        assert s._db is not None
        await s._db.execute("PRAGMA query_only = ON")
        with pytest.raises(StoreError, match="readonly"):
            await call(method)(s)
        for name in sorted(READS):
            await call(name)(s)
        assert await s.get_account("alice") == account(public_id="pub-1")
    finally:
        await s.close()


@pytest.mark.parametrize("method", WRITES)
async def test_locked_sqlite_fails_writes_as_store_errors(tmp_path: Path, method: str) -> None:
    """Another process holding the write lock past the busy timeout: StoreError, not
    sqlite3.OperationalError; once the lock is let go the same write succeeds."""
    path = tmp_path / "np.sqlite3"
    s = await fill_stale(path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError, match="locked"):
            await call(method)(s)
        other.execute("ROLLBACK")
        await call(method)(s)
    finally:
        other.close()
        await s.close()


async def test_opening_a_locked_sqlite_is_a_store_error(tmp_path: Path) -> None:
    """Opening a file another process holds the write lock of fails with StoreError."""
    path = tmp_path / "np.sqlite3"
    s = await fill_stale(path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        late = SQLiteStore(path, cipher=TokenCipher(KEY), busy_timeout=0)
        with pytest.raises(StoreError, match="locked"):
            await late.open()
    finally:
        other.close()
        await s.close()


async def test_full_sqlite_fails_as_store_error(tmp_path: Path) -> None:
    """A full disk (SQLITE_FULL) is a StoreError, and the row before it stays readable."""
    s = SQLiteStore(tmp_path / "np.sqlite3", cipher=TokenCipher(KEY))
    await s.open()
    try:
        await fill(s)
        assert s._db is not None
        async with s._db.execute("PRAGMA page_count") as cur:
            row = await cur.fetchone()
        assert row is not None
        await s._db.execute(f"PRAGMA max_page_count = {row[0]}")
        with pytest.raises(StoreError, match="full"):
            await s.put_account(account("bob", display_name="B" * 200_000))
        assert await s.get_account("alice") == account(public_id="pub-1")
    finally:
        await s.close()


async def test_sqlite_in_an_unmakeable_directory_is_a_store_error(tmp_path: Path) -> None:
    """A database path under a regular file cannot be created: StoreError on open."""
    (tmp_path / "file").write_text("x")
    s = SQLiteStore(tmp_path / "file" / "np.sqlite3", cipher=TokenCipher(KEY))
    with pytest.raises(StoreError, match="cannot open"):
        await s.open()


async def test_two_processes_migrate_a_new_file_once(tmp_path: Path) -> None:
    """Two stores opening one new file together both succeed, and the schema is made once."""
    path = tmp_path / "np.sqlite3"
    a = SQLiteStore(path, cipher=TokenCipher(KEY))
    b = SQLiteStore(path, cipher=TokenCipher(KEY))
    try:
        await asyncio.gather(a.open(), b.open())
        await a.put_account(account())
        assert await b.get_account("alice") == account()
    finally:
        await a.close()
        await b.close()


class BusyOnce:
    """A connection whose first journal-mode switch loses a race ("locked")."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    async def execute(self, sql: str) -> None:
        self.statements.append(sql)
        if len(self.statements) == 1:
            raise sqlite3.OperationalError("database is locked")


async def test_wal_switch_waits_for_the_lock_and_retries() -> None:
    """Losing the WAL switch to another process waits on the write lock and tries again."""
    db = BusyOnce()
    await sqlite_module._use_wal(cast("aiosqlite.Connection", db))
    assert db.statements == [
        "PRAGMA journal_mode = WAL",
        "BEGIN IMMEDIATE",
        "ROLLBACK",
        "PRAGMA journal_mode = WAL",
    ]


def test_reconnect_reason_names_the_cause() -> None:
    """An active account needs nothing; a revoked one says so; an unknown key says that."""
    assert account().reconnect_reason is None
    assert account(status=AccountStatus.RECONNECT_REQUIRED).reconnect_reason == "revoked"
    missing = account(token="", status=AccountStatus.RECONNECT_REQUIRED, key_missing=True)
    assert missing.reconnect_reason == "unknown_key"


def test_one_query_is_rendered_for_each_dialect() -> None:
    """A query is written once with ``?``; PostgreSQL gets ``$1, $2, ...`` in order, SQLite the
    text itself, and no query of the module carries a dialect's own placeholder."""
    assert POSTGRES.query(links.RESEAL) == (
        "UPDATE sources SET secret = $1 WHERE account_id = $2 AND kind = $3 AND secret = $4"
    )
    assert SQLITE.query(links.RESEAL) == links.RESEAL
    queries = [
        v
        for module in (sql, links)
        for k, v in vars(module).items()
        if k.isupper() and isinstance(v, str)
    ]
    assert len(queries) > 20 and not any("$" in q for q in queries)


# -- sources and push tokens ---------------------------------------------------------------------


async def test_an_account_is_a_widget_with_its_spotify_source(store: Store) -> None:
    """Writing an account links its Spotify grant as the widget's first source."""
    await store.put_account(account())
    (spotify,) = await store.list_sources("alice")
    assert (spotify.kind, spotify.user_name, spotify.secret) == (SourceKind.SPOTIFY, "alice", "")
    opened = await store.get_source("alice", SourceKind.SPOTIFY)
    assert opened is not None and opened.secret == "refresh-1"
    await store.set_status("alice", AccountStatus.RECONNECT_REQUIRED)
    got = await store.get_source("alice", SourceKind.SPOTIFY)
    assert got is not None and got.status is AccountStatus.RECONNECT_REQUIRED


async def test_sources_round_trip_and_leave(store: Store) -> None:
    """A second source is linked, read (sealed in the list, opened alone), replaced, removed."""
    await store.put_account(account())
    await store.put_source(lastfm())
    assert [s.kind for s in await store.list_sources("alice")] == ["lastfm", "spotify"]
    assert await store.get_source("alice", SourceKind.LASTFM) == lastfm()
    await store.put_source(lastfm(secret="lastfm-session-2"))
    assert await store.get_source("alice", SourceKind.LASTFM) == lastfm(secret="lastfm-session-2")
    await store.delete_source("alice", SourceKind.LASTFM)
    assert await store.get_source("alice", SourceKind.LASTFM) is None
    assert await store.get_account("alice") == account()


async def test_push_token_is_found_by_itself_and_rotates(store: Store) -> None:
    """A push token names its widget; a new one replaces it and the old one names nobody."""
    await store.put_account(account())
    assert await store.get_push_token("alice") is None
    await store.set_push_token("alice", "push-1")
    assert await store.account_of_push_token("push-1") == "alice"
    assert await store.get_push_token("alice") == "push-1"
    await store.set_push_token("alice", "push-2")
    assert await store.account_of_push_token("push-1") is None
    assert await store.account_of_push_token("push-2") == "alice"


async def test_deleting_a_widget_removes_its_sources_and_push_token(store: Store) -> None:
    await store.put_account(account())
    await store.put_source(lastfm())
    await store.set_push_token("alice", "push-1")
    await store.delete_account("alice")
    assert await store.list_sources("alice") == []
    assert await store.account_of_push_token("push-1") is None


async def test_source_secrets_and_push_tokens_are_ciphertext_on_disk(tmp_path: Path) -> None:
    """No secret of any source, nor the push token, is in the file in the clear."""
    path = tmp_path / "np.sqlite3"
    s = SQLiteStore(path, cipher=TokenCipher(KEY))
    await s.open()
    await s.put_account(account())
    await s.put_source(lastfm(secret="lastfm-session-secret"))
    await s.set_push_token("alice", "push-token-secret")
    await s.close()
    raw = path.read_bytes() + (
        Path(f"{path}-wal").read_bytes() if Path(f"{path}-wal").exists() else b""
    )
    assert b"lastfm-session-secret" not in raw and b"push-token-secret" not in raw


async def test_reseal_moves_every_secret_and_an_unknown_key_locks_them(reopen: Reopen) -> None:
    """Key rotation re-seals sources and push tokens too; without any known key they read as
    key_missing (and no push token), never raise."""
    s = await reopen(TokenCipher(OLD_KEY))
    await s.put_account(account())
    await s.put_source(lastfm())
    await s.set_push_token("alice", "push-1")
    s = await reopen(TokenCipher(KEY, [OLD_KEY]))
    assert await s.reseal_all() == 3
    s = await reopen(TokenCipher(KEY))
    assert await s.get_source("alice", SourceKind.LASTFM) == lastfm()
    assert await s.get_push_token("alice") == "push-1"
    s = await reopen(TokenCipher("unrelated-key-" * 3))
    locked = await s.get_source("alice", SourceKind.LASTFM)
    assert locked is not None and locked.key_missing and locked.secret == ""
    assert locked.status is AccountStatus.RECONNECT_REQUIRED
    assert await s.get_push_token("alice") is None
    assert await s.account_of_push_token("push-1") == "alice"


async def test_a_failed_account_write_leaves_no_widget_without_its_source(tmp_path: Path) -> None:
    """The widget and its Spotify source are written in one transaction: when the source's
    write fails, the widget's is undone too."""
    path = tmp_path / "np.sqlite3"
    s = SQLiteStore(path, cipher=TokenCipher(KEY))
    await s.open()
    try:
        with sqlite3.connect(path) as db:
            db.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON sources"
                " BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        db.close()
        with pytest.raises(StoreError, match="refused"):
            await s.put_account(account("bob", token="refresh-bob"))
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT count(*) FROM accounts").fetchone() == (0,)
        db.close()
        assert await s.get_account("bob") is None
    finally:
        await s.close()


async def test_webhooks_round_trip_with_the_secret_sealed(store: Store) -> None:
    await store.put_account(account())
    hook = Webhook("wh1", "alice", "https://hooks.test/a", "whsec_c2VjcmV0", 10.0)
    await store.put_webhook(hook)
    await store.put_webhook(Webhook("wh2", "alice", "https://hooks.test/b", "whsec_b3RoZXI=", 11.0))
    assert await store.list_webhooks("alice") == [
        hook,
        Webhook("wh2", "alice", "https://hooks.test/b", "whsec_b3RoZXI=", 11.0),
    ]
    assert [h.id for h in await store.list_webhooks()] == ["wh1", "wh2"]
    assert await store.delete_webhook("bob", "wh1") is False  # only the owner's
    assert await store.delete_webhook("alice", "wh2") is True
    assert [h.id for h in await store.list_webhooks("alice")] == ["wh1"]


async def test_a_delivery_is_claimed_once(store: Store) -> None:
    """The row is the claim: a second insert of the same event for the same webhook loses."""
    await store.put_account(account())
    await store.put_webhook(Webhook("wh1", "alice", "https://hooks.test/a", "whsec_eA==", 1.0))
    first = Delivery("wh1", "ev1", "track.started", 5.0, "pending", 0, "")
    assert await store.claim_delivery(first) is True
    assert await store.claim_delivery(first) is False
    done = Delivery("wh1", "ev1", "track.started", 6.0, "delivered", 1, "HTTP 204")
    await store.update_delivery(done)
    await store.claim_delivery(Delivery("wh1", "ev0", "playback.paused", 1.0, "failed", 3, "x"))
    assert await store.list_deliveries("wh1") == [
        done,
        Delivery("wh1", "ev0", "playback.paused", 1.0, "failed", 3, "x"),
    ]
    assert await store.prune_deliveries("wh1", before=2.0) == 1
    await store.delete_account("alice")
    assert await store.list_webhooks() == [] and await store.list_deliveries("wh1") == []
