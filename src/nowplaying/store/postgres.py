"""PostgreSQL store (``NOWPLAYING_DATABASE_URL=postgresql://...``), for several instances.

Instances starting together migrate once (an advisory lock), and :meth:`PostgresStore.lock` is a
lock across instances for when Redis cannot hold one. Every database failure surfaces as
:class:`~nowplaying.store.base.StoreError`, never as a half-written row (each write is one
statement); a schema newer than this code is refused, unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from nowplaying.crypto import TokenCipher
from nowplaying.store.base import StoreError, newer_schema_message
from nowplaying.store.links import Row, Step
from nowplaying.store.sql import POSTGRES, DriverErrors, SQLStore

T = TypeVar("T")
MIGRATION_LOCK = 7_331_001  # pg_advisory_lock key for schema migrations
NAMED_LOCKS = 7_331_002
"""The first key of :meth:`PostgresStore.lock`'s advisory locks (the second is the name's)."""

#: The migrations in PostgreSQL's dialect; ``schema_migrations`` records which are applied.
MIGRATIONS = POSTGRES.migrations

_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
# A driver's message may quote the URL (its password): name the error's kind only.
_failing = functools.partial(DriverErrors, _ERRORS, detail=lambda e: f" ({type(e).__name__})")


class PostgresStore(SQLStore):
    """The :class:`~nowplaying.store.base.Store` on PostgreSQL."""

    dialect = POSTGRES

    def __init__(self, url: str, *, cipher: TokenCipher, schema: str | None = None) -> None:
        super().__init__(cipher=cipher)
        self.url = url
        self.schema = schema
        self._pool: Any = None

    async def open(self) -> None:
        settings = {"search_path": self.schema} if self.schema else {}
        with _failing("cannot open PostgreSQL database"):
            pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=10,
                timeout=5,
                server_settings=settings,
                command_timeout=5,
            )
        try:
            with _failing("cannot open PostgreSQL database"):
                async with pool.acquire() as conn:
                    await conn.execute(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
                    try:
                        await _migrate(conn)
                    finally:
                        await conn.execute(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
        except StoreError:
            pool.terminate()
            raise
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @contextlib.asynccontextmanager
    async def lock(self, name: str, *, wait: float = 4.0) -> AsyncIterator[None]:
        """Hold the advisory lock ``name`` across every instance on this database for the
        block (a transaction's, so a dropped connection releases it). Raises
        :class:`StoreError`, without running the block, when it is held elsewhere for ``wait``
        seconds (the server's ``lock_timeout``, a bound on a real socket) or the database fails.
        """
        if self._pool is None:
            raise StoreError("store is not open")
        key = zlib.crc32(name.encode()) - 2**31  # a signed int4
        with _failing(f"lock {name!r} not had"):
            conn = await self._pool.acquire()
        try:
            with _failing(f"lock {name!r} not had"):
                transaction = conn.transaction()
                await transaction.start()
            try:
                with _failing(f"lock {name!r} not had"):
                    await conn.execute(f"SET LOCAL lock_timeout = {int(wait * 1000)}")
                    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", NAMED_LOCKS, key)
                yield
            finally:
                with contextlib.suppress(*_ERRORS):
                    await transaction.rollback()  # ends it, and the lock with it
        finally:
            with contextlib.suppress(*_ERRORS):
                await self._pool.release(conn)

    async def _run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``fn`` on a pooled connection; every database failure becomes StoreError."""
        if self._pool is None:
            raise StoreError("store is not open")
        with _failing("PostgreSQL unavailable"):
            async with self._pool.acquire() as conn:
                return await fn(conn)

    async def _execute(self, sql: str, *args: object) -> int:
        async def go(conn: Any) -> int:
            return _rowcount(str(await conn.execute(self.dialect.query(sql), *args)))

        return await self._run(go)

    async def _execute_all(self, steps: Sequence[Step]) -> None:
        async def go(conn: Any) -> None:
            async with conn.transaction():
                for sql, args in steps:
                    await conn.execute(self.dialect.query(sql), *args)

        await self._run(go)

    async def _fetchone(self, sql: str, *args: object) -> Row | None:
        async def go(conn: Any) -> Row | None:
            row = await conn.fetchrow(self.dialect.query(sql), *args)
            return tuple(row) if row is not None else None

        return await self._run(go)

    async def _fetch(self, sql: str, *args: object) -> list[Row]:
        async def go(conn: Any) -> list[Row]:
            return [tuple(r) for r in await conn.fetch(self.dialect.query(sql), *args)]

        return await self._run(go)


async def _migrate(conn: Any) -> None:
    """Apply the migrations the schema lacks (the caller holds the advisory lock); refuse a
    schema newer than this code, changing nothing."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
    if version > len(MIGRATIONS):
        raise StoreError(newer_schema_message(version, len(MIGRATIONS)))
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        async with conn.transaction():
            await conn.execute(script)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", number)


def _rowcount(status: str) -> int:
    """How many rows a command changed, from its status (``"UPDATE 1"``, ``"DELETE 3"``)."""
    return int(status.rsplit(" ", 1)[-1])
