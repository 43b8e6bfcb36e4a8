"""SQLite store (the default): one file, WAL mode, versioned schema migrations run on open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

from nowplaying.crypto import TokenCipher

from .base import Account, AccountStatus, LoginState, Session, StoreError

MIGRATIONS: tuple[str, ...] = (
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
)


class SQLiteStore:
    """The :class:`~nowplaying.store.base.Store` on a SQLite file."""

    def __init__(self, path: str | Path, *, cipher: TokenCipher) -> None:
        self.path = str(path)
        self._cipher = cipher
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute("PRAGMA foreign_keys = ON")
            await self._db.execute("PRAGMA busy_timeout = 5000")
            if self.path != ":memory:":
                await self._db.execute("PRAGMA journal_mode = WAL")
            await self._migrate()
        except sqlite3.Error as e:
            raise StoreError(f"cannot open SQLite database: {e}") from e

    async def _migrate(self) -> None:
        db = self._conn
        async with db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    # -- accounts ------------------------------------------------------------------------------

    def _account(self, row: sqlite3.Row | tuple[object, ...]) -> Account:
        (aid, name, sealed, scopes, consented, status, public_id, last_played) = tuple(row)
        return Account(
            id=str(aid),
            display_name=str(name),
            refresh_token=self._cipher.open(str(sealed), context=str(aid)),
            scopes=frozenset(str(scopes).split()),
            consented_at=float(str(consented)),
            status=AccountStatus(str(status)),
            public_id=str(public_id) if public_id is not None else None,
            show_last_played=bool(last_played),
        )

    _COLUMNS = (
        "id, display_name, refresh_token, scopes, consented_at, status, public_id, show_last_played"
    )

    async def get_account(self, account_id: str) -> Account | None:
        return await self._one_account("id = ?", account_id)

    async def get_account_by_public_id(self, public_id: str) -> Account | None:
        return await self._one_account("public_id = ?", public_id)

    async def _one_account(self, where: str, value: str) -> Account | None:
        sql = f"SELECT {self._COLUMNS} FROM accounts WHERE {where}"  # noqa: S608 - fixed clauses
        async with self._conn.execute(sql, (value,)) as cur:
            row = await cur.fetchone()
        return self._account(row) if row else None

    async def list_accounts(self) -> list[Account]:
        sql = f"SELECT {self._COLUMNS} FROM accounts ORDER BY id"  # noqa: S608
        async with self._conn.execute(sql) as cur:
            rows = await cur.fetchall()
        return [self._account(r) for r in rows]

    async def put_account(self, account: Account) -> None:
        sealed = self._cipher.seal(account.refresh_token, context=account.id)
        await self._conn.execute(
            """INSERT INTO accounts (id, display_name, refresh_token, scopes, consented_at, status,
                   public_id, show_last_played)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET display_name = excluded.display_name,
                   refresh_token = excluded.refresh_token, scopes = excluded.scopes,
                   consented_at = excluded.consented_at, status = excluded.status,
                   public_id = excluded.public_id, show_last_played = excluded.show_last_played""",
            (
                account.id,
                account.display_name,
                sealed,
                " ".join(sorted(account.scopes)),
                account.consented_at,
                str(account.status),
                account.public_id,
                int(account.show_last_played),
            ),
        )

    async def set_refresh_token(self, account_id: str, refresh_token: str) -> None:
        sealed = self._cipher.seal(refresh_token, context=account_id)
        await self._conn.execute(
            "UPDATE accounts SET refresh_token = ? WHERE id = ?", (sealed, account_id)
        )

    async def set_status(self, account_id: str, status: AccountStatus) -> None:
        await self._conn.execute(
            "UPDATE accounts SET status = ? WHERE id = ?", (str(status), account_id)
        )

    async def set_public_id(self, account_id: str, public_id: str | None) -> None:
        await self._conn.execute(
            "UPDATE accounts SET public_id = ? WHERE id = ?", (public_id, account_id)
        )

    async def set_show_last_played(self, account_id: str, on: bool) -> None:
        await self._conn.execute(
            "UPDATE accounts SET show_last_played = ? WHERE id = ?", (int(on), account_id)
        )

    async def delete_account(self, account_id: str) -> None:
        await self._conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,))

    async def reseal_all(self) -> int:
        """Re-encrypt every refresh token not sealed with the current key; how many changed."""
        changed = 0
        async with self._conn.execute("SELECT id, refresh_token FROM accounts") as cur:
            rows = await cur.fetchall()
        for aid, sealed in rows:
            if not self._cipher.is_current(str(sealed)):
                plain = self._cipher.open(str(sealed), context=str(aid))
                await self.set_refresh_token(str(aid), plain)
                changed += 1
        return changed

    # -- sessions ------------------------------------------------------------------------------

    async def put_session(self, session: Session) -> None:
        await self._conn.execute(
            "INSERT OR REPLACE INTO sessions (key, account_id, created_at, last_seen)"
            " VALUES (?, ?, ?, ?)",
            (session.key, session.account_id, session.created_at, session.last_seen),
        )

    async def get_session(self, key: str) -> Session | None:
        async with self._conn.execute(
            "SELECT key, account_id, created_at, last_seen FROM sessions WHERE key = ?", (key,)
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return Session(
            key=str(row[0]),
            account_id=str(row[1]),
            created_at=float(row[2]),
            last_seen=float(row[3]),
        )

    async def touch_session(self, key: str, when: float) -> None:
        await self._conn.execute("UPDATE sessions SET last_seen = ? WHERE key = ?", (when, key))

    async def delete_session(self, key: str) -> None:
        await self._conn.execute("DELETE FROM sessions WHERE key = ?", (key,))

    async def delete_sessions_of(self, account_id: str) -> None:
        await self._conn.execute("DELETE FROM sessions WHERE account_id = ?", (account_id,))

    # -- logins --------------------------------------------------------------------------------

    async def put_login(self, login: LoginState) -> None:
        await self._conn.execute(
            "INSERT INTO logins (state, code_verifier, browser, created_at, scopes)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                login.state,
                login.code_verifier,
                login.browser,
                login.created_at,
                " ".join(sorted(login.scopes)),
            ),
        )

    async def take_login(self, state: str) -> LoginState | None:
        async with self._conn.execute(
            "DELETE FROM logins WHERE state = ?"
            " RETURNING state, code_verifier, browser, created_at, scopes",
            (state,),
        ) as cur:
            row = await cur.fetchone()
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
        async with self._conn.execute(
            "DELETE FROM logins WHERE created_at < ?", (older_than,)
        ) as cur:
            return cur.rowcount
