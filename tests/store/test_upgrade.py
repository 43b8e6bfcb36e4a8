"""Upgrades: a 0.1.0 database opens with every account, session and login intact and the new
migrations applied; a database newer than the code is refused and left unchanged."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from harness.app import SECRET_KEY
from harness.db_0_1_0 import (
    ACCOUNTS,
    FIXTURE,
    LOGINS,
    POSTGRES_SCHEMA,
    SESSIONS,
    SQLITE_SCHEMA,
    rows,
)
from harness.services import POSTGRES_URL, postgres_schema

from nowplaying.crypto import TokenCipher
from nowplaying.models import SourceKind
from nowplaying.store import (
    Account,
    Pause,
    PostgresStore,
    SourceLink,
    SQLiteStore,
    Store,
    StoreError,
    postgres,
    sqlite,
)
from nowplaying.store.sql import POSTGRES, SQLITE, Dialect

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("dialect", "shipped"), [(SQLITE, SQLITE_SCHEMA), (POSTGRES, POSTGRES_SCHEMA)], ids=str
)
def test_migration_1_renders_what_0_1_0_shipped(dialect: Dialect, shipped: str) -> None:
    """The one SQL definition, rendered for each database, is 0.1.0's schema to the word."""
    assert dialect.migrations[0].split() == shipped.split()


async def assert_0_1_0_intact(store: Store) -> None:
    """Everything 0.1.0 stored reads back as it went in, and the new table works."""
    assert await store.list_accounts() == list(ACCOUNTS)
    alice = await store.get_account_by_public_id("pub-alice-0001")
    assert alice is not None and alice.refresh_token == ""  # the public read leaves it sealed
    full = await store.get_account(alice.id)
    assert full is not None and full.refresh_token == "alice-refresh-0.1.0"
    for session in SESSIONS:
        assert await store.get_session(session.key) == session
    for login in LOGINS:
        assert await store.take_login(login.state) == login
    assert await store.get_pause() is None
    await store.set_pause(Pause(until=2e9, reason="QUOTA_EXCEEDED"))
    assert await store.get_pause() == Pause(until=2e9, reason="QUOTA_EXCEEDED")
    await assert_takes_a_widget_without_spotify(store)


async def assert_takes_a_widget_without_spotify(store: Store) -> None:
    """The upgraded database keeps a widget made with Last.fm beside the Spotify ones."""
    zoe = Account("lastfm:zoe", "zoe", "", frozenset(), 5.0, spotify=False)
    await store.add_widget(zoe, SourceLink(zoe.id, SourceKind.LASTFM, "zoe", "sk-zoe", 5.0))
    assert await store.list_accounts() == sorted([*ACCOUNTS, zoe], key=lambda a: a.id)
    assert await store.account_of_source(SourceKind.LASTFM, "zoe") == zoe.id
    await store.delete_account(zoe.id)


def schema_of(path: Path) -> set[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        found = db.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    db.close()
    # Whitespace aside: ALTERed and freshly created tables read the same.
    return {(name, " ".join(sql.split())) for name, sql in found}


async def test_sqlite_0_1_0_upgrades_intact(tmp_path: Path) -> None:
    """The committed 0.1.0 SQLite file migrates on open; nothing in it is lost."""
    path = tmp_path / "np.sqlite3"
    shutil.copy(FIXTURE, path)
    store = SQLiteStore(path, cipher=TokenCipher(SECRET_KEY))
    await store.open()
    try:
        await assert_0_1_0_intact(store)
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(sqlite.MIGRATIONS)
    db.close()


async def test_sqlite_upgraded_schema_equals_a_fresh_one(tmp_path: Path) -> None:
    """Migrating 0.1.0 gives the very schema a new install gets."""
    upgraded, fresh = tmp_path / "upgraded.sqlite3", tmp_path / "fresh.sqlite3"
    shutil.copy(FIXTURE, upgraded)
    for path in (upgraded, fresh):
        store = SQLiteStore(path, cipher=TokenCipher(SECRET_KEY))
        await store.open()
        await store.close()
    assert schema_of(upgraded) == schema_of(fresh)
    assert (
        "app_state",
        "CREATE TABLE app_state ( key TEXT PRIMARY KEY, value TEXT NOT NULL )",
    ) in (schema_of(fresh))


async def test_sqlite_newer_schema_is_refused_unchanged(tmp_path: Path) -> None:
    """A file from a later nowplaying is refused with a clear message, byte for byte intact."""
    path = tmp_path / "np.sqlite3"
    newer = len(sqlite.MIGRATIONS) + 5
    with sqlite3.connect(path) as db:
        db.executescript(f"CREATE TABLE future (x TEXT); PRAGMA user_version = {newer};")
    db.close()
    before = path.read_bytes()
    store = SQLiteStore(path, cipher=TokenCipher(SECRET_KEY))
    with pytest.raises(StoreError) as info:
        await store.open()
    assert str(info.value) == (
        f"database schema version {newer} is newer than this nowplaying"
        f" (knows {len(sqlite.MIGRATIONS)}); upgrade nowplaying or use a backup"
    )
    assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists()
    with pytest.raises(StoreError, match="not open"):
        await store.get_account("alice")


async def make_postgres_0_1_0(schema: str) -> None:
    """Migration 1 only, with schema_migrations at version 1, and the 0.1.0 rows."""
    accounts, sessions, logins = rows()
    conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        await conn.execute(POSTGRES_SCHEMA)
        await conn.execute("INSERT INTO schema_migrations (version) VALUES (1)")
        await conn.executemany(
            "INSERT INTO accounts VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", accounts
        )
        await conn.executemany("INSERT INTO sessions VALUES ($1, $2, $3, $4)", sessions)
        await conn.executemany("INSERT INTO logins VALUES ($1, $2, $3, $4, $5)", logins)
    finally:
        await conn.close()


async def versions(schema: str) -> list[int]:
    conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})
    try:
        return [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
    finally:
        await conn.close()


async def test_postgres_0_1_0_upgrades_intact() -> None:
    """A 0.1.0 PostgreSQL schema migrates on open; nothing in it is lost."""
    async for schema in postgres_schema():
        await make_postgres_0_1_0(schema)
        store = PostgresStore(POSTGRES_URL, cipher=TokenCipher(SECRET_KEY), schema=schema)
        await store.open()
        try:
            await assert_0_1_0_intact(store)
        finally:
            await store.close()
        assert sorted(await versions(schema)) == list(range(1, len(postgres.MIGRATIONS) + 1))


async def test_postgres_newer_schema_is_refused_unchanged() -> None:
    """A schema from a later nowplaying is refused with a clear message; no table is made."""
    async for schema in postgres_schema():
        newer = len(postgres.MIGRATIONS) + 5
        conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})
        await conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", newer)
        await conn.close()
        store = PostgresStore(POSTGRES_URL, cipher=TokenCipher(SECRET_KEY), schema=schema)
        with pytest.raises(StoreError, match=f"version {newer} is newer than this nowplaying"):
            await store.open()
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            tables = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
            )
        finally:
            await conn.close()
        assert [t["table_name"] for t in tables] == ["schema_migrations"]
        assert await versions(schema) == [newer]
        with pytest.raises(StoreError, match="not open"):
            await store.get_account("alice")


# -- from the schema before widgets had sources (version 2) --------------------------------------

BEFORE_SOURCES = 2  # migrations applied by the release before sources


def assert_widgets_of(accounts: list[tuple[object, ...]], found: list[tuple[object, ...]]) -> None:
    """Each account is a widget whose one source is Spotify: the ciphertext moved verbatim."""
    expected = sorted((a[0], "spotify", a[0], a[2], a[5], a[4]) for a in accounts)
    assert sorted(tuple(r) for r in found) == expected


async def assert_sources_intact(store: Store) -> None:
    assert await store.list_accounts() == list(ACCOUNTS)
    for a in ACCOUNTS:
        assert [s.kind for s in await store.list_sources(a.id)] == [SourceKind.SPOTIFY]
    assert await store.get_pause() == Pause(until=2e9, reason="QUOTA_EXCEEDED")
    for session in SESSIONS:
        assert await store.get_session(session.key) == session
    await assert_takes_a_widget_without_spotify(store)


async def test_sqlite_before_sources_upgrades_to_widgets(tmp_path: Path) -> None:
    """A database at today's schema (version 2, with a pause) opens with every account a widget
    with one Spotify source, every secret, session and the pause intact."""
    path = tmp_path / "np.sqlite3"
    accounts, sessions, _ = rows()
    with sqlite3.connect(path) as db:
        db.executescript(
            "BEGIN;"
            + ";".join(SQLITE.migrations[:BEFORE_SOURCES])
            + f"; PRAGMA user_version = {BEFORE_SOURCES}; COMMIT;"
        )
        db.executemany("INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?)", accounts)
        db.executemany("INSERT INTO sessions VALUES (?, ?, ?, ?)", sessions)
        db.execute(
            "INSERT INTO app_state VALUES ('pause', ?)",
            ('{"until": 2e9, "reason": "QUOTA_EXCEEDED"}',),
        )
    db.close()
    store = SQLiteStore(path, cipher=TokenCipher(SECRET_KEY))
    await store.open()
    try:
        await assert_sources_intact(store)
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert_widgets_of(accounts, db.execute("SELECT * FROM sources").fetchall())
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(sqlite.MIGRATIONS)
    db.close()


async def test_postgres_before_sources_upgrades_to_widgets() -> None:
    """The same on PostgreSQL: version 2 becomes widgets with their Spotify sources."""
    async for schema in postgres_schema():
        accounts, sessions, _ = rows()
        conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})
        try:
            await conn.execute(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            for number, script in enumerate(POSTGRES.migrations[:BEFORE_SOURCES], start=1):
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", number)
            await conn.executemany(
                "INSERT INTO accounts VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", accounts
            )
            await conn.executemany("INSERT INTO sessions VALUES ($1, $2, $3, $4)", sessions)
            await conn.execute(
                "INSERT INTO app_state VALUES ('pause', $1)",
                '{"until": 2e9, "reason": "QUOTA_EXCEEDED"}',
            )
        finally:
            await conn.close()
        store = PostgresStore(POSTGRES_URL, cipher=TokenCipher(SECRET_KEY), schema=schema)
        await store.open()
        try:
            await assert_sources_intact(store)
        finally:
            await store.close()
        conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})
        try:
            assert_widgets_of(accounts, await conn.fetch("SELECT * FROM sources"))
        finally:
            await conn.close()
        assert sorted(await versions(schema)) == list(range(1, len(postgres.MIGRATIONS) + 1))
