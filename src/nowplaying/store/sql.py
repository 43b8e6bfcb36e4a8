"""The one SQL definition both stores run: the tables, every query and the row mapping.

Written in the SQL that SQLite (3.35+) and PostgreSQL share; a :class:`Dialect` renders its
placeholders and column types for one of them. A backend provides three primitives (run, fetch
one, fetch all) and keeps only its connection, its migration locking and its error wrapping.
"""

from __future__ import annotations

import functools
import itertools
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

from nowplaying.crypto import CryptoError, TokenCipher
from nowplaying.models import AccountStatus, SourceKind
from nowplaying.store.base import (
    Account,
    Delivery,
    LoginState,
    Pause,
    Session,
    SourceLink,
    StoreError,
    Webhook,
    pause_from_json,
    pause_to_json,
)
from nowplaying.store.links import (
    PUT_SOURCE,
    SET_SECRET,
    SET_SOURCE_STATUS,
    LinkedSources,
    Row,
    Step,
    open_secret,
    source_row,
)

#: Schema versions, in order; a backend records how many are applied (SQLite's
#: ``PRAGMA user_version``, PostgreSQL's ``schema_migrations`` table) and applies the rest on
#: open. Statements are separated by ``;`` (none inside a statement); ``{real}``, ``{boolean}`` and
#: ``{false}`` are the dialect's column types. Never edit one that has shipped: add the next.
MIGRATIONS: tuple[str, ...] = (
    # 1 (0.1.0): accounts, sessions, pending logins.
    """
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        display_name TEXT NOT NULL,
        refresh_token TEXT NOT NULL,
        scopes TEXT NOT NULL,
        consented_at {real} NOT NULL,
        status TEXT NOT NULL,
        public_id TEXT UNIQUE,
        show_last_played {boolean} NOT NULL DEFAULT {false}
    );
    CREATE TABLE sessions (
        key TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        created_at {real} NOT NULL,
        last_seen {real} NOT NULL
    );
    CREATE INDEX sessions_account ON sessions(account_id);
    CREATE TABLE logins (
        state TEXT PRIMARY KEY,
        code_verifier TEXT NOT NULL,
        browser TEXT NOT NULL,
        created_at {real} NOT NULL,
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
    # 3: an account is a widget with sources. Its Spotify grant moves, sealed as it was (the
    # cipher's context is still the account id), into ``sources`` as the widget's first source;
    # push tokens are kept sealed beside a fingerprint to find them by.
    """
    CREATE TABLE sources (
        account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        user_name TEXT NOT NULL,
        secret TEXT NOT NULL,
        status TEXT NOT NULL,
        connected_at {real} NOT NULL,
        PRIMARY KEY (account_id, kind)
    );
    INSERT INTO sources (account_id, kind, user_name, secret, status, connected_at)
        SELECT id, 'spotify', id, refresh_token, status, consented_at FROM accounts;
    ALTER TABLE accounts DROP COLUMN refresh_token;
    ALTER TABLE accounts DROP COLUMN status;
    CREATE TABLE push_tokens (
        account_id TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
        fingerprint TEXT NOT NULL UNIQUE,
        secret TEXT NOT NULL
    );
    """,
    # 4: track-change webhooks (the secret sealed like a refresh token) and their deliveries; a
    # delivery's row is also its claim: the instance whose insert succeeds sends it.
    """
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_at {real} NOT NULL
    );
    CREATE INDEX webhooks_account ON webhooks(account_id);
    CREATE TABLE webhook_deliveries (
        webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
        event_id TEXT NOT NULL,
        event TEXT NOT NULL,
        at {real} NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        detail TEXT NOT NULL,
        PRIMARY KEY (webhook_id, event_id)
    );
    CREATE INDEX webhook_deliveries_at ON webhook_deliveries(webhook_id, at);
    """,
)


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database spells what :data:`MIGRATIONS` and the queries say."""

    name: str
    numbered_params: bool
    """``$1, $2, ...`` (PostgreSQL) rather than ``?`` (SQLite)."""
    real: str
    boolean: str
    false: str

    @property
    def migrations(self) -> tuple[str, ...]:
        return tuple(
            m.format(real=self.real, boolean=self.boolean, false=self.false) for m in MIGRATIONS
        )

    def query(self, sql: str) -> str:
        """``sql`` with this dialect's placeholders."""
        return _numbered(sql) if self.numbered_params else sql


@functools.cache
def _numbered(sql: str) -> str:
    counter = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


SQLITE = Dialect("sqlite", numbered_params=False, real="REAL", boolean="INTEGER", false="0")
POSTGRES = Dialect(
    "postgresql", numbered_params=True, real="DOUBLE PRECISION", boolean="BOOLEAN", false="FALSE"
)


class DriverErrors:
    """A ``with`` block in which the driver's ``errors`` become :class:`StoreError`: ``what``
    failed, then ``detail(error)`` (a backend shows as much of the driver's message as is safe).
    """

    def __init__(
        self,
        errors: tuple[type[Exception], ...],
        what: str,
        detail: Callable[[Exception], str],
    ) -> None:
        self.errors = errors
        self.what = what
        self.detail = detail

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, self.errors):
            raise StoreError(f"{self.what}{self.detail(error)}") from error


# -- the queries ---------------------------------------------------------------------------------

_ACCOUNT = (
    "SELECT a.id, a.display_name, s.secret, a.scopes, a.consented_at, s.status, a.public_id,"
    " a.show_last_played FROM accounts a"
    " LEFT JOIN sources s ON s.account_id = a.id AND s.kind = 'spotify'"
)
"""A widget and its Spotify source's columns (NULL for a widget without Spotify)."""
ACCOUNT_BY_ID = f"{_ACCOUNT} WHERE a.id = ?"
ACCOUNT_BY_PUBLIC_ID = f"{_ACCOUNT} WHERE a.public_id = ?"
ALL_ACCOUNTS = f"{_ACCOUNT} ORDER BY a.id"
PUT_WIDGET = """INSERT INTO accounts (id, display_name, scopes, consented_at, public_id,
        show_last_played)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name,
        scopes = excluded.scopes, consented_at = excluded.consented_at,
        public_id = excluded.public_id, show_last_played = excluded.show_last_played"""
ADD_WIDGET = """INSERT INTO accounts (id, display_name, scopes, consented_at, public_id,
        show_last_played) VALUES (?, ?, ?, ?, ?, ?)"""
UPDATE_WIDGET = """UPDATE accounts SET display_name = ?, scopes = ?,
        consented_at = ?, public_id = ?, show_last_played = ? WHERE id = ?"""
SET_PUBLIC_ID = "UPDATE accounts SET public_id = ? WHERE id = ?"
SET_SHOW_LAST_PLAYED = "UPDATE accounts SET show_last_played = ? WHERE id = ?"
TOUCH_ACCOUNT = "UPDATE accounts SET id = id WHERE id = ?"
DELETE_ACCOUNT = "DELETE FROM accounts WHERE id = ?"

PUT_SESSION = """INSERT INTO sessions (key, account_id, created_at, last_seen) VALUES (?, ?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET account_id = excluded.account_id,
        created_at = excluded.created_at, last_seen = excluded.last_seen"""
GET_SESSION = "SELECT key, account_id, created_at, last_seen FROM sessions WHERE key = ?"
TOUCH_SESSION = "UPDATE sessions SET last_seen = ? WHERE key = ?"
DELETE_SESSION = "DELETE FROM sessions WHERE key = ?"
DELETE_SESSIONS_OF = "DELETE FROM sessions WHERE account_id = ?"

PUT_LOGIN = (
    "INSERT INTO logins (state, code_verifier, browser, created_at, scopes) VALUES (?, ?, ?, ?, ?)"
)
TAKE_LOGIN = (
    "DELETE FROM logins WHERE state = ? RETURNING state, code_verifier, browser, created_at, scopes"
)
PURGE_LOGINS = "DELETE FROM logins WHERE created_at < ?"

GET_STATE = "SELECT value FROM app_state WHERE key = ?"
PUT_STATE = """INSERT INTO app_state (key, value) VALUES (?, ?)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value"""
PAUSE_KEY = "pause"

PUT_WEBHOOK = (
    "INSERT INTO webhooks (id, account_id, url, secret, created_at) VALUES (?, ?, ?, ?, ?)"
)
WEBHOOKS_OF = """SELECT id, account_id, url, secret, created_at FROM webhooks
    WHERE account_id = ? ORDER BY created_at, id"""
ALL_WEBHOOKS = """SELECT id, account_id, url, secret, created_at FROM webhooks
    ORDER BY account_id, created_at, id"""
DELETE_WEBHOOK = "DELETE FROM webhooks WHERE id = ? AND account_id = ?"
CLAIM_DELIVERY = """INSERT INTO webhook_deliveries
    (webhook_id, event_id, event, at, status, attempts, detail)
    VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (webhook_id, event_id) DO NOTHING"""
UPDATE_DELIVERY = """UPDATE webhook_deliveries SET status = ?, attempts = ?, detail = ?, at = ?
    WHERE webhook_id = ? AND event_id = ?"""
DELIVERIES_OF = """SELECT webhook_id, event_id, event, at, status, attempts, detail
    FROM webhook_deliveries
    WHERE webhook_id = ?
    ORDER BY at DESC, event_id LIMIT ?"""
PRUNE_DELIVERIES = "DELETE FROM webhook_deliveries WHERE webhook_id = ? AND at < ?"

# -- rows -> values ------------------------------------------------------------------------------


def account_from_row(row: Row, cipher: TokenCipher, *, unseal: bool) -> Account:
    """A row of :data:`ACCOUNT_BY_ID` as an Account; ``unseal=False`` leaves the token sealed
    (``""``). A token no configured key opens reads as ``key_missing``, never raises."""
    aid, name, sealed, scopes, consented, status, public_id, last_played = row
    common: dict[str, Any] = {
        "id": str(aid),
        "display_name": str(name),
        "scopes": _words(scopes),
        "consented_at": float(consented),
        "public_id": str(public_id) if public_id is not None else None,
        "show_last_played": bool(last_played),
    }
    if sealed is None:  # no Spotify source
        return Account(**common, refresh_token="", spotify=False)
    try:
        token = open_secret(cipher, str(sealed), str(aid), unseal=unseal)
    except CryptoError:
        # Sealed with a key that is not configured: readable, never usable; the row stays as it
        # is, so configuring the old key again brings the account back.
        return Account(
            **common, refresh_token="", status=AccountStatus.RECONNECT_REQUIRED, key_missing=True
        )
    return Account(**common, refresh_token=token, status=AccountStatus(str(status)))


def session_from_row(row: Row) -> Session:
    key, account_id, created_at, last_seen = row
    return Session(str(key), str(account_id), float(created_at), float(last_seen))


def login_from_row(row: Row) -> LoginState:
    state, verifier, browser, created_at, scopes = row
    return LoginState(str(state), str(verifier), str(browser), float(created_at), _words(scopes))


def _words(value: object) -> frozenset[str]:
    return frozenset(str(value).split())


def _joined(words: frozenset[str]) -> str:
    return " ".join(sorted(words))


# -- the store, over a backend's three primitives ------------------------------------------------


class SQLStore(LinkedSources, ABC):
    """Every :class:`~nowplaying.store.base.Store` method, written once.

    A backend sets :attr:`dialect` and implements :meth:`_execute`, :meth:`_fetchone`,
    :meth:`_fetch` and :meth:`_execute_all`, which take queries of this module (rendered with
    ``dialect.query``) and raise :class:`~nowplaying.store.base.StoreError` for every failure of
    the database.
    """

    dialect: ClassVar[Dialect]

    def __init__(self, *, cipher: TokenCipher) -> None:
        self._cipher = cipher

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def _execute(self, sql: str, *args: object) -> int:
        """Run one statement; how many rows it changed."""

    @abstractmethod
    async def _fetchone(self, sql: str, *args: object) -> Row | None: ...

    @abstractmethod
    async def _fetch(self, sql: str, *args: object) -> list[Row]: ...

    @abstractmethod
    async def _execute_all(self, steps: Sequence[Step]) -> None:
        """Run statements in one transaction: all of them, or none."""

    # -- accounts --------------------------------------------------------------------------------

    async def get_account(self, account_id: str) -> Account | None:
        row = await self._fetchone(ACCOUNT_BY_ID, account_id)
        return account_from_row(row, self._cipher, unseal=True) if row else None

    async def get_account_info(self, account_id: str) -> Account | None:
        row = await self._fetchone(ACCOUNT_BY_ID, account_id)
        return account_from_row(row, self._cipher, unseal=False) if row else None

    async def get_account_by_public_id(self, public_id: str) -> Account | None:
        row = await self._fetchone(ACCOUNT_BY_PUBLIC_ID, public_id)
        return account_from_row(row, self._cipher, unseal=False) if row else None

    async def list_accounts(self) -> list[Account]:
        rows = await self._fetch(ALL_ACCOUNTS)
        return [account_from_row(r, self._cipher, unseal=True) for r in rows]

    async def put_account(self, account: Account) -> None:
        widget = (
            account.display_name,
            _joined(account.scopes),
            account.consented_at,
            account.public_id,
            account.show_last_played,
        )
        if not account.spotify:
            await self._execute(PUT_WIDGET, account.id, *widget)
            return
        if account.key_missing or not account.refresh_token:
            # Its token and status are placeholders (unknown key, or read without the token):
            # keep the stored (sealed) ones.
            await self._execute(UPDATE_WIDGET, *widget, account.id)
            return
        sealed = self._cipher.seal(account.refresh_token, context=account.id)
        spotify = (account.id, SourceKind.SPOTIFY.value, account.id, sealed)
        source = (*spotify, str(account.status), account.consented_at)
        await self._execute_all([(PUT_WIDGET, (account.id, *widget)), (PUT_SOURCE, source)])

    async def add_widget(self, account: Account, link: SourceLink) -> None:
        if link.account_id != account.id or account.spotify or link.kind is SourceKind.SPOTIFY:
            raise ValueError("a widget is added with no Spotify grant and a source of its own")
        widget = (account.display_name, _joined(account.scopes), account.consented_at)
        await self._execute_all(
            [
                (ADD_WIDGET, (account.id, *widget, account.public_id, account.show_last_played)),
                (PUT_SOURCE, source_row(link, self._cipher)),
            ]
        )

    async def set_refresh_token(self, account_id: str, refresh_token: str) -> None:
        if not refresh_token:
            raise ValueError("refusing to store an empty refresh token")
        sealed = self._cipher.seal(refresh_token, context=account_id)
        await self._execute(SET_SECRET, sealed, account_id, SourceKind.SPOTIFY.value)

    async def ensure_writable(self, account_id: str) -> None:
        """Raise :class:`StoreError` unless a write to the account's row goes through now (the
        row is rewritten as it is)."""
        await self._execute(TOUCH_ACCOUNT, account_id)

    async def set_status(self, account_id: str, status: AccountStatus) -> None:
        await self._execute(SET_SOURCE_STATUS, str(status), account_id, SourceKind.SPOTIFY.value)

    async def set_public_id(self, account_id: str, public_id: str | None) -> None:
        await self._execute(SET_PUBLIC_ID, public_id, account_id)

    async def set_show_last_played(self, account_id: str, on: bool) -> None:
        await self._execute(SET_SHOW_LAST_PLAYED, on, account_id)

    async def delete_account(self, account_id: str) -> None:
        await self._execute(DELETE_ACCOUNT, account_id)

    # -- sessions --------------------------------------------------------------------------------

    async def put_session(self, session: Session) -> None:
        await self._execute(
            PUT_SESSION, session.key, session.account_id, session.created_at, session.last_seen
        )

    async def get_session(self, key: str) -> Session | None:
        row = await self._fetchone(GET_SESSION, key)
        return session_from_row(row) if row else None

    async def touch_session(self, key: str, when: float) -> None:
        await self._execute(TOUCH_SESSION, when, key)

    async def delete_session(self, key: str) -> None:
        await self._execute(DELETE_SESSION, key)

    async def delete_sessions_of(self, account_id: str) -> None:
        await self._execute(DELETE_SESSIONS_OF, account_id)

    # -- logins ----------------------------------------------------------------------------------

    async def put_login(self, login: LoginState) -> None:
        await self._execute(
            PUT_LOGIN,
            login.state,
            login.code_verifier,
            login.browser,
            login.created_at,
            _joined(login.scopes),
        )

    async def take_login(self, state: str) -> LoginState | None:
        row = await self._fetchone(TAKE_LOGIN, state)
        return login_from_row(row) if row else None

    async def purge_logins(self, older_than: float) -> int:
        return await self._execute(PURGE_LOGINS, older_than)

    # -- app-wide state --------------------------------------------------------------------------

    async def get_pause(self) -> Pause | None:
        row = await self._fetchone(GET_STATE, PAUSE_KEY)
        return pause_from_json(str(row[0])) if row else None

    async def set_pause(self, pause: Pause) -> None:
        await self._execute(PUT_STATE, PAUSE_KEY, pause_to_json(pause))

    # -- webhooks ------------------------------------------------------------------------------

    async def put_webhook(self, hook: Webhook) -> None:
        sealed = self._cipher.seal(hook.secret, context=hook.id)
        await self._execute(
            PUT_WEBHOOK, hook.id, hook.account_id, hook.url, sealed, hook.created_at
        )

    async def list_webhooks(self, account_id: str | None = None) -> list[Webhook]:
        """The account's webhooks (every account's with None), oldest first; a secret no
        configured key opens reads as empty (deliveries to it are then not signed: skipped)."""
        rows = await (
            self._fetch(WEBHOOKS_OF, account_id) if account_id else self._fetch(ALL_WEBHOOKS)
        )
        return [self._webhook(r) for r in rows]

    def _webhook(self, row: Row) -> Webhook:
        hook_id, account_id, url, sealed, created_at = row
        try:
            secret = self._cipher.open(str(sealed), context=str(hook_id))
        except CryptoError:
            secret = ""
        return Webhook(str(hook_id), str(account_id), str(url), secret, float(created_at))

    async def delete_webhook(self, account_id: str, hook_id: str) -> bool:
        return await self._execute(DELETE_WEBHOOK, hook_id, account_id) > 0

    async def claim_delivery(self, delivery: Delivery) -> bool:
        """Record ``delivery``; False when one with its event id exists (another instance, or an
        earlier attempt, has it)."""
        d = delivery
        claimed = await self._execute(
            CLAIM_DELIVERY, d.webhook_id, d.event_id, d.event, d.at, d.status, d.attempts, d.detail
        )
        return claimed > 0

    async def update_delivery(self, delivery: Delivery) -> None:
        d = delivery
        await self._execute(
            UPDATE_DELIVERY, d.status, d.attempts, d.detail, d.at, d.webhook_id, d.event_id
        )

    async def list_deliveries(self, hook_id: str, limit: int = 20) -> list[Delivery]:
        rows = await self._fetch(DELIVERIES_OF, hook_id, limit)
        return [
            Delivery(str(w), str(e), str(ev), float(at), str(st), int(n), str(dt))
            for w, e, ev, at, st, n, dt in rows
        ]

    async def prune_deliveries(self, hook_id: str, before: float) -> int:
        return await self._execute(PRUNE_DELIVERIES, hook_id, before)
