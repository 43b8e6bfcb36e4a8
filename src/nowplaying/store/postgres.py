"""PostgreSQL store (``NOWPLAYING_DATABASE_URL=postgresql://...``) for several instances.

A connection pool (asyncpg); versioned migrations applied on open under an advisory lock, so
instances starting together migrate once; a schema newer than this code is refused, unchanged.
Every database failure surfaces as :class:`~nowplaying.store.base.StoreError` (the web layer
answers 503), never a half-written row: each write is one statement.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from nowplaying.crypto import CryptoError, TokenCipher

from .base import (
    Account,
    AccountStatus,
    LoginState,
    Pause,
    Session,
    StoreError,
    newer_schema_message,
    pause_from_json,
    pause_to_json,
)

T = TypeVar("T")
MIGRATION_LOCK = 7_331_001  # pg_advisory_lock key for schema migrations

#: Schema versions, in order (the same as SQLite's, in PostgreSQL's dialect); the
#: ``schema_migrations`` table records which are applied.
MIGRATIONS: tuple[str, ...] = (
    # 1 (0.1.0): accounts, sessions, pending logins.
    """
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        display_name TEXT NOT NULL,
        refresh_token TEXT NOT NULL,
        scopes TEXT NOT NULL,
        consented_at DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL,
        public_id TEXT UNIQUE,
        show_last_played BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE TABLE sessions (
        key TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        created_at DOUBLE PRECISION NOT NULL,
        last_seen DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX sessions_account ON sessions(account_id);
    CREATE TABLE logins (
        state TEXT PRIMARY KEY,
        code_verifier TEXT NOT NULL,
        browser TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        scopes TEXT NOT NULL
    );
    """,
    # 2: app-wide state that must survive a restart (the pause Spotify imposed), as JSON.
    """
    CREATE TABLE app_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
)

_COLUMNS = (
    "id, display_name, refresh_token, scopes, consented_at, status, public_id, show_last_played"
)
_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
_PAUSE = "pause"


class PostgresStore:
    """The :class:`~nowplaying.store.base.Store` on PostgreSQL."""

    def __init__(self, url: str, *, cipher: TokenCipher, schema: str | None = None) -> None:
        self.url = url
        self.schema = schema
        self._cipher = cipher
        self._pool: Any = None

    async def open(self) -> None:
        settings = {"search_path": self.schema} if self.schema else {}
        try:
            pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=10,
                timeout=5,
                server_settings=settings,
                command_timeout=5,
            )
        except _ERRORS as e:
            raise StoreError(f"cannot open PostgreSQL database ({type(e).__name__})") from e
        try:
            async with pool.acquire() as conn:
                await conn.execute(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
                try:
                    await _migrate(conn)
                finally:
                    await conn.execute(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
        except (*_ERRORS, StoreError) as e:
            pool.terminate()
            if isinstance(e, StoreError):
                raise
            raise StoreError(f"cannot open PostgreSQL database ({type(e).__name__})") from e
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        if self._pool is None:
            raise StoreError("store is not open")
        try:
            async with self._pool.acquire() as conn:
                return await fn(conn)
        except _ERRORS as e:
            raise StoreError(f"PostgreSQL unavailable ({type(e).__name__})") from e

    async def _execute(self, sql: str, *args: object) -> str:
        async def go(conn: Any) -> str:
            return str(await conn.execute(sql, *args))

        return await self._run(go)

    async def _fetchrow(self, sql: str, *args: object) -> Any:
        async def go(conn: Any) -> Any:
            return await conn.fetchrow(sql, *args)

        return await self._run(go)

    async def _fetch(self, sql: str, *args: object) -> list[Any]:
        async def go(conn: Any) -> list[Any]:
            return list(await conn.fetch(sql, *args))

        return await self._run(go)

    # -- accounts ------------------------------------------------------------------------------

    def _account(self, row: Any, *, unseal: bool = True) -> Account:
        """The row as an Account; ``unseal=False`` leaves the token sealed (``""``)."""
        common: dict[str, Any] = {
            "id": row["id"],
            "display_name": row["display_name"],
            "scopes": frozenset(str(row["scopes"]).split()),
            "consented_at": float(row["consented_at"]),
            "public_id": row["public_id"],
            "show_last_played": bool(row["show_last_played"]),
        }
        token = ""
        try:
            if not self._cipher.knows(row["refresh_token"]):
                raise CryptoError("sealed with an unknown key")
            if unseal:
                token = self._cipher.open(row["refresh_token"], context=row["id"])
        except CryptoError:
            # Sealed with a key that is not configured: readable, never usable; the row stays
            # as it is, so configuring the old key again brings the account back.
            return Account(
                **common,
                refresh_token="",
                status=AccountStatus.RECONNECT_REQUIRED,
                key_missing=True,
            )
        return Account(**common, refresh_token=token, status=AccountStatus(row["status"]))

    async def get_account(self, account_id: str) -> Account | None:
        row = await self._fetchrow(f"SELECT {_COLUMNS} FROM accounts WHERE id = $1", account_id)  # noqa: S608
        return self._account(row) if row else None

    async def get_account_info(self, account_id: str) -> Account | None:
        row = await self._fetchrow(f"SELECT {_COLUMNS} FROM accounts WHERE id = $1", account_id)  # noqa: S608
        return self._account(row, unseal=False) if row else None

    async def get_account_by_public_id(self, public_id: str) -> Account | None:
        row = await self._fetchrow(
            f"SELECT {_COLUMNS} FROM accounts WHERE public_id = $1",  # noqa: S608
            public_id,
        )
        return self._account(row, unseal=False) if row else None

    async def list_accounts(self) -> list[Account]:
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM accounts ORDER BY id")  # noqa: S608
        return [self._account(r) for r in rows]

    async def put_account(self, account: Account) -> None:
        if account.key_missing or not account.refresh_token:
            # Its token and status are placeholders (unknown key, or read without the token):
            # keep the stored (sealed) ones.
            await self._execute(
                """UPDATE accounts SET display_name = $1, scopes = $2, consented_at = $3,
                       public_id = $4, show_last_played = $5 WHERE id = $6""",
                account.display_name,
                " ".join(sorted(account.scopes)),
                account.consented_at,
                account.public_id,
                account.show_last_played,
                account.id,
            )
            return
        await self._execute(
            """INSERT INTO accounts (id, display_name, refresh_token, scopes, consented_at, status,
                   public_id, show_last_played)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name,
                   refresh_token = excluded.refresh_token, scopes = excluded.scopes,
                   consented_at = excluded.consented_at, status = excluded.status,
                   public_id = excluded.public_id, show_last_played = excluded.show_last_played""",
            account.id,
            account.display_name,
            self._cipher.seal(account.refresh_token, context=account.id),
            " ".join(sorted(account.scopes)),
            account.consented_at,
            str(account.status),
            account.public_id,
            account.show_last_played,
        )

    async def set_refresh_token(self, account_id: str, refresh_token: str) -> None:
        if not refresh_token:
            raise ValueError("refusing to store an empty refresh token")
        sealed = self._cipher.seal(refresh_token, context=account_id)
        await self._execute(
            "UPDATE accounts SET refresh_token = $1 WHERE id = $2", sealed, account_id
        )

    async def set_status(self, account_id: str, status: AccountStatus) -> None:
        await self._execute(
            "UPDATE accounts SET status = $1 WHERE id = $2", str(status), account_id
        )

    async def set_public_id(self, account_id: str, public_id: str | None) -> None:
        await self._execute(
            "UPDATE accounts SET public_id = $1 WHERE id = $2", public_id, account_id
        )

    async def set_show_last_played(self, account_id: str, on: bool) -> None:
        await self._execute(
            "UPDATE accounts SET show_last_played = $1 WHERE id = $2", on, account_id
        )

    async def delete_account(self, account_id: str) -> None:
        await self._execute("DELETE FROM accounts WHERE id = $1", account_id)

    async def reseal_all(self) -> int:
        """Re-encrypt every refresh token not sealed with the current key; how many changed.

        Rows no configured key opens are left as they are (``list_accounts`` shows them as
        ``key_missing``). Each row is replaced only if it still holds what was read, so a token
        rotated meanwhile (by this instance or another) is never overwritten with the old one.
        """
        changed = 0
        for row in await self._fetch("SELECT id, refresh_token FROM accounts"):
            sealed = row["refresh_token"]
            if self._cipher.is_current(sealed):
                continue
            try:
                plain = self._cipher.open(sealed, context=row["id"])
            except CryptoError:
                continue
            status = await self._execute(
                "UPDATE accounts SET refresh_token = $1 WHERE id = $2 AND refresh_token = $3",
                self._cipher.seal(plain, context=row["id"]),
                row["id"],
                sealed,
            )
            changed += _rowcount(status)
        return changed

    # -- sessions ------------------------------------------------------------------------------

    async def put_session(self, session: Session) -> None:
        await self._execute(
            """INSERT INTO sessions (key, account_id, created_at, last_seen) VALUES ($1, $2, $3, $4)
               ON CONFLICT (key) DO UPDATE SET account_id = excluded.account_id,
                   created_at = excluded.created_at, last_seen = excluded.last_seen""",
            session.key,
            session.account_id,
            session.created_at,
            session.last_seen,
        )

    async def get_session(self, key: str) -> Session | None:
        row = await self._fetchrow(
            "SELECT key, account_id, created_at, last_seen FROM sessions WHERE key = $1", key
        )
        if row is None:
            return None
        return Session(row["key"], row["account_id"], row["created_at"], row["last_seen"])

    async def touch_session(self, key: str, when: float) -> None:
        await self._execute("UPDATE sessions SET last_seen = $1 WHERE key = $2", when, key)

    async def delete_session(self, key: str) -> None:
        await self._execute("DELETE FROM sessions WHERE key = $1", key)

    async def delete_sessions_of(self, account_id: str) -> None:
        await self._execute("DELETE FROM sessions WHERE account_id = $1", account_id)

    # -- logins --------------------------------------------------------------------------------

    async def put_login(self, login: LoginState) -> None:
        await self._execute(
            "INSERT INTO logins (state, code_verifier, browser, created_at, scopes)"
            " VALUES ($1, $2, $3, $4, $5)",
            login.state,
            login.code_verifier,
            login.browser,
            login.created_at,
            " ".join(sorted(login.scopes)),
        )

    async def take_login(self, state: str) -> LoginState | None:
        row = await self._fetchrow(
            "DELETE FROM logins WHERE state = $1"
            " RETURNING state, code_verifier, browser, created_at, scopes",
            state,
        )
        if row is None:
            return None
        return LoginState(
            row["state"],
            row["code_verifier"],
            row["browser"],
            row["created_at"],
            frozenset(str(row["scopes"]).split()),
        )

    async def purge_logins(self, older_than: float) -> int:
        status = await self._execute("DELETE FROM logins WHERE created_at < $1", older_than)
        return _rowcount(status)

    # -- app-wide state ------------------------------------------------------------------------

    async def get_pause(self) -> Pause | None:
        row = await self._fetchrow("SELECT value FROM app_state WHERE key = $1", _PAUSE)
        return pause_from_json(str(row["value"])) if row else None

    async def set_pause(self, pause: Pause) -> None:
        await self._execute(
            "INSERT INTO app_state (key, value) VALUES ($1, $2)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            _PAUSE,
            pause_to_json(pause),
        )


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
