"""The 0.1.0 database, frozen: its schema, the rows the upgrade tests expect, and how the SQLite
fixture ``tests/fixtures/db-0.1.0.sqlite3`` was made.

The schemas are migration 1 (now ``store/sql.py``, rendered per dialect) exactly as 0.1.0
shipped them (copied here, so a later edit of the migrations cannot silently change what
"0.1.0" means). Refresh tokens are sealed with the tests' ``SECRET_KEY``. To remake the file
(never needed unless it is lost): ``.venv/bin/python -m harness.db_0_1_0``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from harness.app import SECRET_KEY
from nowplaying.crypto import TokenCipher
from nowplaying.store import Account, AccountStatus, LoginState, Session

FIXTURE = Path(__file__).parent / "fixtures" / "db-0.1.0.sqlite3"

SQLITE_SCHEMA = """
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
    """

POSTGRES_SCHEMA = """
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
    """

_SCOPES = frozenset({"user-read-currently-playing"})
ACCOUNTS = (
    Account(
        id="alice",
        display_name="Alice",
        refresh_token="alice-refresh-0.1.0",
        scopes=frozenset({"user-read-currently-playing", "user-read-recently-played"}),
        consented_at=1_760_000_000.5,
        public_id="pub-alice-0001",
        show_last_played=True,
    ),
    Account(
        id="bob",
        display_name="Bob <b>",
        refresh_token="bob-refresh-0.1.0",
        scopes=_SCOPES,
        consented_at=1_760_000_100.0,
        status=AccountStatus.RECONNECT_REQUIRED,
    ),
    Account(
        id="carol",
        display_name="Carol",
        refresh_token="carol-refresh-0.1.0",
        scopes=_SCOPES,
        consented_at=1_760_000_200.0,
    ),
)
SESSIONS = (
    Session("session-alice", "alice", 1_760_000_000.0, 1_760_050_000.0),
    Session("session-carol", "carol", 1_760_000_200.0, 1_760_000_300.0),
)
LOGINS = (LoginState("state-0.1.0", "verifier-0.1.0", "browser-0.1.0", 1_760_000_400.0, _SCOPES),)


def rows() -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The accounts, sessions and logins as 0.1.0 stored them (tokens freshly sealed)."""
    cipher = TokenCipher(SECRET_KEY)
    accounts: list[tuple[object, ...]] = [
        (
            a.id,
            a.display_name,
            cipher.seal(a.refresh_token, context=a.id),
            " ".join(sorted(a.scopes)),
            a.consented_at,
            str(a.status),
            a.public_id,
            a.show_last_played,
        )
        for a in ACCOUNTS
    ]
    sessions: list[tuple[object, ...]] = [
        (s.key, s.account_id, s.created_at, s.last_seen) for s in SESSIONS
    ]
    logins: list[tuple[object, ...]] = [
        (x.state, x.code_verifier, x.browser, x.created_at, " ".join(sorted(x.scopes)))
        for x in LOGINS
    ]
    return accounts, sessions, logins


def make_sqlite(path: Path) -> None:
    """Write a 0.1.0 SQLite database (``PRAGMA user_version = 1``) at ``path``."""
    accounts, sessions, logins = rows()
    with sqlite3.connect(path) as db:
        db.executescript(f"BEGIN; {SQLITE_SCHEMA}; PRAGMA user_version = 1; COMMIT;")
        db.executemany("INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?)", accounts)
        db.executemany("INSERT INTO sessions VALUES (?, ?, ?, ?)", sessions)
        db.executemany("INSERT INTO logins VALUES (?, ?, ?, ?, ?)", logins)
    db.close()


if __name__ == "__main__":
    FIXTURE.unlink(missing_ok=True)
    make_sqlite(FIXTURE)
    with sqlite3.connect(FIXTURE) as db:
        db.execute("VACUUM")
    db.close()
