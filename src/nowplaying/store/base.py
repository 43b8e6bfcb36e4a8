"""The storage interface every backend implements, and the values it stores.

An account is a widget with its linked sources; every secret is sealed with the one cipher, so a
key rotation re-seals them all. Refresh tokens are plaintext above the store and sealed on the
way to disk. Only :meth:`Store.get_account` and :meth:`Store.list_accounts` decrypt; the read
paths that never present the token leave it sealed and return ``refresh_token=""``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal, Protocol

from nowplaying.models import QUOTA_EXCEEDED, RATE_LIMIT, AccountStatus, SourceKind


class StoreError(Exception):
    """The store could not do what was asked (unavailable, or a bad URL)."""


@dataclass(frozen=True, slots=True)
class Account:
    """A widget and its Spotify source, if it has one.

    ``id`` is the widget's id: the Spotify user id for a widget first made by signing in with
    Spotify, ``lastfm:NAME`` or ``listenbrainz:NAME`` for one made by signing in with another
    source (:func:`widget_id`). ``refresh_token`` and ``status`` are its Spotify grant's; a widget
    without Spotify (``spotify=False``) has ``refresh_token=""`` and status ACTIVE, and its
    sources are :meth:`Store.list_sources`."""

    id: str
    display_name: str
    refresh_token: str = field(repr=False)
    scopes: frozenset[str]
    consented_at: float
    status: AccountStatus = AccountStatus.ACTIVE
    public_id: str | None = None
    show_last_played: bool = False
    key_missing: bool = False
    """The stored refresh token was sealed with a key that is not configured (a rotated
    ``NOWPLAYING_SECRET_KEY`` without the old one in ``NOWPLAYING_OLD_SECRET_KEYS``). The store
    then returns the account with ``status=RECONNECT_REQUIRED`` and an empty ``refresh_token``;
    the stored row is untouched, so configuring the old key again brings the account back."""
    spotify: bool = True
    """The widget has a Spotify source. Writing an account with ``spotify=False`` writes the
    widget alone (its sources are linked with :meth:`Store.put_source`)."""

    @property
    def reconnect_reason(self) -> Literal["unknown_key", "revoked"] | None:
        """Why the account needs reconnecting: ``"unknown_key"``, ``"revoked"``, or None."""
        if self.key_missing:
            return "unknown_key"
        if self.status is AccountStatus.RECONNECT_REQUIRED:
            return "revoked"
        return None


WIDGET_ID_SEPARATOR = ":"
"""Between a source's kind and its user name in a widget's id; never in a Spotify user id."""


def widget_id(kind: SourceKind, user_name: str) -> str:
    """The id of a widget first made by signing in with ``kind`` as ``user_name``: stable, and
    apart from Spotify's ids (a Spotify widget keeps the Spotify user id it always had)."""
    if kind is SourceKind.SPOTIFY:
        return user_name
    return f"{kind}{WIDGET_ID_SEPARATOR}{user_name}"


@dataclass(frozen=True, slots=True)
class SourceLink:
    """A source linked to a widget: which upstream, the user there, and the sealed secret that
    reads it (Spotify's refresh token, Last.fm's session key, a ListenBrainz user token)."""

    account_id: str
    kind: SourceKind
    user_name: str
    secret: str = field(repr=False)
    connected_at: float
    status: AccountStatus = AccountStatus.ACTIVE
    key_missing: bool = False
    """Sealed with a key that is not configured (as :attr:`Account.key_missing`); ``secret``
    is then empty and ``status`` RECONNECT_REQUIRED."""


@dataclass(frozen=True, slots=True)
class Webhook:
    """An owner's track-change webhook: where to POST, and the secret that signs it."""

    id: str
    account_id: str
    url: str
    secret: str = field(repr=False)
    """``whsec_`` and base64 (Standard Webhooks); sealed at rest."""
    created_at: float


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one webhook: its row is the claim (one instance sends) and the record the
    owner sees. ``status``: ``pending``, ``delivered``, ``failed`` or ``refused``."""

    webhook_id: str
    event_id: str
    event: str
    at: float
    status: str
    attempts: int
    detail: str
    """The last answer (``HTTP 503``) or why it was not sent; never the URL or the secret."""


@dataclass(frozen=True, slots=True)
class Session:
    """A browser session. ``key`` is a fingerprint of the cookie's id, never the id itself."""

    key: str
    account_id: str
    created_at: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class LoginState:
    """A login in flight: the OAuth ``state``, the PKCE verifier, and the browser it belongs to."""

    state: str
    code_verifier: str = field(repr=False)
    browser: str
    """Fingerprint of the pre-login cookie that must come back with the callback."""
    created_at: float
    scopes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Pause:
    """The app-wide pause Spotify imposed: no upstream call before ``until`` (epoch seconds).

    ``reason`` is Spotify's (``QUOTA_EXCEEDED`` for the development-mode quota, whose
    Retry-After is hours) or ``"rate_limit"`` for the rolling-window limit.
    """

    until: float
    reason: str = RATE_LIMIT

    @property
    def quota(self) -> bool:
        return self.reason == QUOTA_EXCEEDED


def pause_to_json(pause: Pause) -> str:
    """The stored form of the app-wide pause (every backend keeps this text)."""
    return json.dumps({"until": pause.until, "reason": pause.reason})


def pause_from_json(value: str) -> Pause | None:
    """The pause :func:`pause_to_json` stored; None for anything unreadable (a pause is
    advisory: a damaged row must not stop the app)."""
    try:
        data = json.loads(value)
        return Pause(until=float(data["until"]), reason=str(data["reason"]))
    except (ValueError, TypeError, KeyError):
        return None


def newer_schema_message(found: int, known: int) -> str:
    """Why a database made by a later nowplaying is refused (and left unchanged)."""
    return (
        f"database schema version {found} is newer than this nowplaying (knows {known});"
        " upgrade nowplaying or use a backup"
    )


class Store(Protocol):
    """What the app needs from persistence. Every backend passes ``tests/store/test_store.py``."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def get_account(self, account_id: str) -> Account | None:
        """The account with its refresh token decrypted: for the refresh path only."""
        ...

    async def get_account_info(self, account_id: str) -> Account | None:
        """The account with its token left sealed (``refresh_token`` empty), nothing decrypted:
        for read paths (sessions, the owner page)."""
        ...

    async def get_account_by_public_id(self, public_id: str) -> Account | None:
        """The published account, its token left sealed like :meth:`get_account_info`."""
        ...

    async def list_accounts(self) -> list[Account]: ...
    async def put_account(self, account: Account) -> None:
        """Insert or replace the account. One whose token was not read (``refresh_token``
        empty, or ``key_missing``) keeps the stored token and status."""
        ...

    async def set_refresh_token(self, account_id: str, refresh_token: str) -> None: ...
    async def ensure_writable(self, account_id: str) -> None:
        """Raise :class:`StoreError` unless a write (of a refresh token) would go through now."""
        ...

    async def set_status(self, account_id: str, status: AccountStatus) -> None: ...
    async def set_public_id(self, account_id: str, public_id: str | None) -> None: ...
    async def set_show_last_played(self, account_id: str, on: bool) -> None: ...
    async def delete_account(self, account_id: str) -> None: ...

    async def put_session(self, session: Session) -> None: ...
    async def get_session(self, key: str) -> Session | None: ...
    async def touch_session(self, key: str, when: float) -> None: ...
    async def delete_session(self, key: str) -> None: ...
    async def delete_sessions_of(self, account_id: str) -> None: ...

    async def put_login(self, login: LoginState) -> None: ...
    async def take_login(self, state: str) -> LoginState | None:
        """Remove and return the pending login for ``state`` (single use)."""
        ...

    async def purge_logins(self, older_than: float) -> int: ...

    async def get_pause(self) -> Pause | None:
        """The stored app-wide pause, if any (it may have passed already)."""
        ...

    async def set_pause(self, pause: Pause) -> None:
        """Store the app-wide pause (replacing the one stored), so a restart honours it."""
        ...

    async def put_source(self, link: SourceLink) -> None:
        """Link a source to a widget that exists, or replace the one of its kind."""
        ...

    async def get_source(self, account_id: str, kind: SourceKind) -> SourceLink | None:
        """The widget's source of ``kind`` with its secret opened."""
        ...

    async def list_sources(self, account_id: str) -> list[SourceLink]:
        """The widget's sources (by kind), secrets left sealed (``secret`` empty)."""
        ...

    async def delete_source(self, account_id: str, kind: SourceKind) -> None: ...

    async def add_widget(self, account: Account, link: SourceLink) -> None:
        """Create a widget with no Spotify source and ``link`` as its first source, in one
        transaction; StoreError (nothing written) when a widget has its id already."""
        ...

    async def account_of_source(self, kind: SourceKind, user_name: str) -> str | None:
        """The widget ``user_name`` of ``kind`` is linked to (the earliest linked, if several),
        nothing decrypted: who signs in with that source."""
        ...

    async def list_links(self, kind: SourceKind) -> list[SourceLink]:
        """Every widget's source of ``kind``, secrets opened: what the engine reads."""
        ...

    async def set_push_token(self, account_id: str, token: str) -> None:
        """Give the widget ``token`` for players to push with (replacing the one it had)."""
        ...

    async def get_push_token(self, account_id: str) -> str | None:
        """The widget's push token, opened (None when it has none, or no key opens it)."""
        ...

    async def account_of_push_token(self, token: str) -> str | None:
        """The widget a push token belongs to, found by its fingerprint, nothing decrypted."""
        ...

    async def put_webhook(self, hook: Webhook) -> None: ...
    async def list_webhooks(self, account_id: str | None = None) -> list[Webhook]: ...
    async def delete_webhook(self, account_id: str, hook_id: str) -> bool: ...
    async def claim_delivery(self, delivery: Delivery) -> bool: ...
    async def update_delivery(self, delivery: Delivery) -> None: ...
    async def list_deliveries(self, hook_id: str, limit: int = 20) -> list[Delivery]: ...
    async def prune_deliveries(self, hook_id: str, before: float) -> int: ...

    async def reseal_all(self) -> int:
        """Re-encrypt every secret (sources' and push tokens) not sealed with the current key;
        returns how many.

        Rows that no configured key opens are skipped (``list_accounts`` shows them as
        ``key_missing``); a token rotated meanwhile is never replaced by the one read."""
        ...
