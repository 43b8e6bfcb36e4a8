"""SQLite store (the default): one file, WAL mode, schema migrations run on open.

Every failure of the database (locked, read-only, disk full, closed, a missing table) surfaces as
:class:`~nowplaying.store.base.StoreError` through one wrapper, :meth:`SQLiteStore._run`; a schema
newer than this code is refused on open and left as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import aiosqlite

from nowplaying.crypto import TokenCipher
from nowplaying.store.base import StoreError, newer_schema_message
from nowplaying.store.links import Row, Step
from nowplaying.store.sql import SQLITE, DriverErrors, SQLStore

T = TypeVar("T")

# sqlite3.Error covers locked / read-only / full / corrupt / closed / constraints; aiosqlite
# raises ValueError once its connection is closed; OSError comes from creating the directory.
_ERRORS = (sqlite3.Error, ValueError, OSError)
# SQLite's messages name no secret ("database is locked"): show them.
_failing = functools.partial(DriverErrors, _ERRORS, detail=lambda e: f": {e}")

MIN_FREE = 256 * 1024
"""Bytes free beside the database below which it is taken as full (see ensure_writable)."""

#: The migrations in SQLite's dialect; ``PRAGMA user_version`` says how many are applied.
MIGRATIONS = SQLITE.migrations


class SQLiteStore(SQLStore):
    """The :class:`~nowplaying.store.base.Store` on a SQLite file.

    ``busy_timeout`` is how long a write waits for another process's lock before failing with
    :class:`StoreError`.
    """

    dialect = SQLITE

    def __init__(self, path: str | Path, *, cipher: TokenCipher, busy_timeout: float = 5.0) -> None:
        super().__init__(cipher=cipher)
        self.path = str(path)
        self._busy_ms = int(busy_timeout * 1000)
        self._db: aiosqlite.Connection | None = None
        # One connection: a transaction's statements must not interleave with another task's.
        self._turn = asyncio.Lock()

    async def ensure_writable(self, account_id: str) -> None:
        """As the base, and the file's filesystem has :data:`MIN_FREE` bytes to spare: a full
        disk can still take a write or two into the WAL's slack, then refuses the next."""
        if self.path != ":memory:":
            with _failing("cannot check the free space"):
                stat = os.statvfs(Path(self.path).parent)
            if stat.f_bavail * stat.f_frsize < MIN_FREE:
                raise StoreError(f"less than {MIN_FREE // 1024} KiB free beside the database")
        await super().ensure_writable(account_id)

    async def open(self) -> None:
        with _failing("cannot open SQLite database"):
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            with _failing("cannot open SQLite database"):
                await db.execute("PRAGMA foreign_keys = ON")
                await db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
                # Refuse a newer schema before anything (the journal mode included) changes.
                await _refuse_newer(db)
                if self.path != ":memory:":
                    await _use_wal(db)
                await _migrate(db)
        except StoreError:
            with contextlib.suppress(*_ERRORS):
                await db.close()
            raise
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            with contextlib.suppress(*_ERRORS):
                await db.close()

    async def _run(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``fn`` on the connection; every database failure becomes :class:`StoreError`."""
        if self._db is None:
            raise StoreError("store is not open")
        async with self._turn:
            with _failing("SQLite failed"):
                return await fn(self._db)

    async def _execute(self, sql: str, *args: object) -> int:
        async def go(db: aiosqlite.Connection) -> int:
            async with db.execute(self.dialect.query(sql), args) as cur:
                return cur.rowcount

        return await self._run(go)

    async def _execute_all(self, steps: Sequence[Step]) -> None:
        async def go(db: aiosqlite.Connection) -> None:
            await db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in steps:
                    await db.execute(self.dialect.query(sql), tuple(args))
                await db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(*_ERRORS):
                    await db.execute("ROLLBACK")
                raise

        await self._run(go)

    async def _fetchone(self, sql: str, *args: object) -> Row | None:
        async def go(db: aiosqlite.Connection) -> Row | None:
            async with db.execute(self.dialect.query(sql), args) as cur:
                row = await cur.fetchone()
            return tuple(row) if row is not None else None

        return await self._run(go)

    async def _fetch(self, sql: str, *args: object) -> list[Row]:
        async def go(db: aiosqlite.Connection) -> list[Row]:
            async with db.execute(self.dialect.query(sql), args) as cur:
                return [tuple(r) for r in await cur.fetchall()]

        return await self._run(go)


async def _use_wal(db: aiosqlite.Connection, attempts: int = 5) -> None:
    """Switch the file to WAL. Two processes making one new file can collide here, and SQLite
    answers the loser "locked" without waiting; waiting for the write lock (through the busy
    timeout, not a sleep of ours) and trying again settles it."""
    for attempt in range(attempts):
        try:
            await db.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:
            if attempt == attempts - 1:
                raise
            await db.execute("BEGIN IMMEDIATE")
            await db.execute("ROLLBACK")
        else:
            return


async def _refuse_newer(db: aiosqlite.Connection) -> int:
    """The file's schema version; StoreError when it is newer than this code knows."""
    async with db.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    version = int(row[0]) if row else 0
    if version > len(MIGRATIONS):
        raise StoreError(newer_schema_message(version, len(MIGRATIONS)))
    return version


async def _migrate(db: aiosqlite.Connection) -> None:
    """Apply the migrations the file lacks, under the write lock (two processes opening one new
    file migrate it once); refuse a schema newer than this code, changing nothing."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        version = await _refuse_newer(db)
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in script.split(";"):
                if statement.strip():
                    await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {number}")
        await db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(*_ERRORS):
            await db.execute("ROLLBACK")
        raise
