"""SQLite store (the default): one file, WAL mode, versioned schema migrations run on open.

Every failure of the database — locked, read-only, disk full, a closed connection, a missing
table — surfaces as :class:`~nowplaying.store.base.StoreError` through one wrapper,
:meth:`SQLiteStore._run`, as in the PostgreSQL store. A database whose schema is newer than
this code is refused on open and left as it was.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

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
Row = Sequence[Any]

# sqlite3.Error covers locked / read-only / full / corrupt / closed; aiosqlite raises ValueError
# once its connection is closed; OSError comes from creating the file's directory.
_ERRORS = (sqlite3.Error, ValueError, OSError)

#: Schema versions, in order; the database's ``PRAGMA user_version`` says how many are applied.
#: Each is statements separated by ``;`` (none inside a statement): they run one by one in the
#: migration's transaction, since ``executescript`` would commit it first.
MIGRATIONS: tuple[str, ...] = (
    # 1 (0.1.0): accounts, sessions, pending logins.
    """
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        display_name TEXT NOT NULL,
        refresh_token TEXT NOT NULL,
        scopes TEXT NOT NULL,
        consented_at REAL NOT NULL,
        status TEXT NOT NULL,
        public_id TEXT UNIQUE,
        show_last_played INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE sessions (
        key TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        created_at REAL NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE INDEX sessions_account ON sessions(account_id);
    CREATE TABLE logins (
        state TEXT PRIMARY KEY,
        code_verifier TEXT NOT NULL,
        browser TEXT NOT NULL,
        created_at REAL NOT NULL,
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
_PAUSE = "pause"


class SQLiteStore:
    """The :class:`~nowplaying.store.base.Store` on a SQLite file.

    ``busy_timeout`` is how long a write waits for another process's lock before failing with
    :class:`StoreError`.
    """

    def __init__(self, path: str | Path, *, cipher: TokenCipher, busy_timeout: float = 5.0) -> None:
        self.path = str(path)
        self._cipher = cipher
        self._busy_ms = int(busy_timeout * 1000)
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(self.path, isolation_level=None)
        except _ERRORS as e:
            raise StoreError(f"cannot open SQLite database: {e}") from e
        try:
            await db.execute("PRAGMA foreign_keys = ON")
            await db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            # Refuse a newer schema before anything (the journal mode included) is changed.
            await _refuse_newer(db)
            if self.path != ":memory:":
                await _use_wal(db)
            await _migrate(db)
        except (*_ERRORS, StoreError) as e:
            with contextlib.suppress(*_ERRORS):
                await db.close()
            if isinstance(e, StoreError):
                raise
            raise StoreError(f"cannot open SQLite database: {e}") from e
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
        try:
            return await fn(self._db)
        except _ERRORS as e:
            raise StoreError(f"SQLite failed: {e}") from e

    async def _execute(self, sql: str, *args: object) -> int:
        """Run one statement; how many rows it changed."""

        async def go(db: aiosqlite.Connection) -> int:
            async with db.execute(sql, args) as cur:
                return cur.rowcount

        return await self._run(go)

    async def _fetchone(self, sql: str, *args: object) -> Row | None:
        async def go(db: aiosqlite.Connection) -> Row | None:
            async with db.execute(sql, args) as cur:
                row = await cur.fetchone()
            return tuple(row) if row is not None else None

        return await self._run(go)

    async def _fetch(self, sql: str, *args: object) -> list[Row]:
        async def go(db: aiosqlite.Connection) -> list[Row]:
            async with db.execute(sql, args) as cur:
                return [tuple(r) for r in await cur.fetchall()]

        return await self._run(go)

    # -- accounts ------------------------------------------------------------------------------

    def _account(self, row: Row, *, unseal: bool = True) -> Account:
        """The row as an Account; ``unseal=False`` leaves the token sealed (``""``)."""
        (aid, name, sealed, scopes, consented, status, public_id, last_played) = row
        common: dict[str, Any] = {
            "id": str(aid),
            "display_name": str(name),
            "scopes": frozenset(str(scopes).split()),
            "consented_at": float(consented),
            "public_id": str(public_id) if public_id is not None else None,
            "show_last_played": bool(last_played),
        }
        token = ""
        try:
            if not self._cipher.knows(str(sealed)):
                raise CryptoError("sealed with an unknown key")
            if unseal:
                token = self._cipher.open(str(sealed), context=str(aid))
        except CryptoError:
            # Sealed with a key that is not configured: readable, never usable; the row stays
            # as it is, so configuring the old key again brings the account back.
            return Account(
                **common,
                refresh_token="",
                status=AccountStatus.RECONNECT_REQUIRED,
                key_missing=True,
            )
        return Account(**common, refresh_token=token, status=AccountStatus(str(status)))

    async def get_account(self, account_id: str) -> Account | None:
        row = await self._fetchone(f"SELECT {_COLUMNS} FROM accounts WHERE id = ?", account_id)  # noqa: S608 - fixed columns
        return self._account(row) if row else None

    async def get_account_info(self, account_id: str) -> Account | None:
        row = await self._fetchone(f"SELECT {_COLUMNS} FROM accounts WHERE id = ?", account_id)  # noqa: S608
        return self._account(row, unseal=False) if row else None

    async def get_account_by_public_id(self, public_id: str) -> Account | None:
        row = await self._fetchone(
            f"SELECT {_COLUMNS} FROM accounts WHERE public_id = ?",  # noqa: S608
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
                """UPDATE accounts SET display_name = ?, scopes = ?, consented_at = ?,
                       public_id = ?, show_last_played = ? WHERE id = ?""",
                account.display_name,
                " ".join(sorted(account.scopes)),
                account.consented_at,
                account.public_id,
                int(account.show_last_played),
                account.id,
            )
            return
        await self._execute(
            """INSERT INTO accounts (id, display_name, refresh_token, scopes, consented_at, status,
                   public_id, show_last_played)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET display_name = excluded.display_name,
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
            int(account.show_last_played),
        )

    async def set_refresh_token(self, account_id: str, refresh_token: str) -> None:
        if not refresh_token:
            raise ValueError("refusing to store an empty refresh token")
        sealed = self._cipher.seal(refresh_token, context=account_id)
        await self._execute(
            "UPDATE accounts SET refresh_token = ? WHERE id = ?", sealed, account_id
        )

    async def set_status(self, account_id: str, status: AccountStatus) -> None:
        await self._execute("UPDATE accounts SET status = ? WHERE id = ?", str(status), account_id)

    async def set_public_id(self, account_id: str, public_id: str | None) -> None:
        await self._execute("UPDATE accounts SET public_id = ? WHERE id = ?", public_id, account_id)

    async def set_show_last_played(self, account_id: str, on: bool) -> None:
        await self._execute(
            "UPDATE accounts SET show_last_played = ? WHERE id = ?", int(on), account_id
        )

    async def delete_account(self, account_id: str) -> None:
        await self._execute("DELETE FROM accounts WHERE id = ?", account_id)

    async def reseal_all(self) -> int:
        """Re-encrypt every refresh token not sealed with the current key; how many changed.

        Rows no configured key opens are left as they are (``list_accounts`` shows them as
        ``key_missing``). Each row is replaced only if it still holds what was read, so a token
        rotated meanwhile is never overwritten with the old one.
        """
        changed = 0
        for aid, sealed in await self._fetch("SELECT id, refresh_token FROM accounts"):
            if self._cipher.is_current(str(sealed)):
                continue
            try:
                plain = self._cipher.open(str(sealed), context=str(aid))
            except CryptoError:
                continue
            changed += await self._execute(
                "UPDATE accounts SET refresh_token = ? WHERE id = ? AND refresh_token = ?",
                self._cipher.seal(plain, context=str(aid)),
                aid,
                sealed,
            )
        return changed

    # -- sessions ------------------------------------------------------------------------------

    async def put_session(self, session: Session) -> None:
        await self._execute(
            "INSERT OR REPLACE INTO sessions (key, account_id, created_at, last_seen)"
            " VALUES (?, ?, ?, ?)",
            session.key,
            session.account_id,
            session.created_at,
            session.last_seen,
        )

    async def get_session(self, key: str) -> Session | None:
        row = await self._fetchone(
            "SELECT key, account_id, created_at, last_seen FROM sessions WHERE key = ?", key
        )
        if row is None:
            return None
        return Session(str(row[0]), str(row[1]), float(row[2]), float(row[3]))

    async def touch_session(self, key: str, when: float) -> None:
        await self._execute("UPDATE sessions SET last_seen = ? WHERE key = ?", when, key)

    async def delete_session(self, key: str) -> None:
        await self._execute("DELETE FROM sessions WHERE key = ?", key)

    async def delete_sessions_of(self, account_id: str) -> None:
        await self._execute("DELETE FROM sessions WHERE account_id = ?", account_id)

    # -- logins --------------------------------------------------------------------------------

    async def put_login(self, login: LoginState) -> None:
        await self._execute(
            "INSERT INTO logins (state, code_verifier, browser, created_at, scopes)"
            " VALUES (?, ?, ?, ?, ?)",
            login.state,
            login.code_verifier,
            login.browser,
            login.created_at,
            " ".join(sorted(login.scopes)),
        )

    async def take_login(self, state: str) -> LoginState | None:
        row = await self._fetchone(
            "DELETE FROM logins WHERE state = ?"
            " RETURNING state, code_verifier, browser, created_at, scopes",
            state,
        )
        if row is None:
            return None
        return LoginState(
            state=str(row[0]),
            code_verifier=str(row[1]),
            browser=str(row[2]),
            created_at=float(row[3]),
            scopes=frozenset(str(row[4]).split()),
        )

    async def purge_logins(self, older_than: float) -> int:
        return await self._execute("DELETE FROM logins WHERE created_at < ?", older_than)

    # -- app-wide state ------------------------------------------------------------------------

    async def get_pause(self) -> Pause | None:
        row = await self._fetchone("SELECT value FROM app_state WHERE key = ?", _PAUSE)
        return pause_from_json(str(row[0])) if row else None

    async def set_pause(self, pause: Pause) -> None:
        await self._execute(
            "INSERT INTO app_state (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            _PAUSE,
            pause_to_json(pause),
        )


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
