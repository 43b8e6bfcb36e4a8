"""The storage contract. Every backend runs this same suite."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nowplaying.crypto import TokenCipher
from nowplaying.store import (
    Account,
    AccountStatus,
    LoginState,
    PostgresStore,
    Session,
    SQLiteStore,
    Store,
    StoreError,
    open_store,
)
from tests.services import POSTGRES_URL, postgres_schema

KEY = "store-test-key-" * 3


@pytest.fixture(params=["sqlite-file", "sqlite-memory", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    cipher = TokenCipher(KEY)
    if request.param == "postgres":
        async for schema in postgres_schema():
            pg = PostgresStore(POSTGRES_URL, cipher=cipher, schema=schema)
            await pg.open()
            yield pg
            await pg.close()
        return
    url = f"sqlite:///{tmp_path}/np.sqlite3" if request.param == "sqlite-file" else "sqlite://"
    s = open_store(url, cipher=cipher)
    await s.open()
    yield s
    await s.close()


def account(aid: str = "alice", token: str = "refresh-1", **kw: object) -> Account:
    return Account(
        id=aid,
        display_name=kw.pop("display_name", "Alice"),  # type: ignore[arg-type]
        refresh_token=token,
        scopes=frozenset({"user-read-currently-playing"}),
        consented_at=1000.0,
        **kw,  # type: ignore[arg-type]
    )


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
        (sealed,) = db.execute("SELECT refresh_token FROM accounts").fetchone()
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
