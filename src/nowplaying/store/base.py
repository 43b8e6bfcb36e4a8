"""The storage interface every backend implements, and the values it stores.

Refresh tokens are plaintext in :class:`Account` and sealed by the backend on the way to disk;
nothing above the store handles ciphertext.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class StoreError(Exception):
    """The store could not do what was asked (unavailable, or a bad URL)."""


class AccountStatus(StrEnum):
    ACTIVE = "active"
    RECONNECT_REQUIRED = "reconnect_required"


@dataclass(frozen=True, slots=True)
class Account:
    """A connected Spotify account. ``id`` is the Spotify user id."""

    id: str
    display_name: str
    refresh_token: str = field(repr=False)
    scopes: frozenset[str]
    consented_at: float
    status: AccountStatus = AccountStatus.ACTIVE
    public_id: str | None = None
    show_last_played: bool = False


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


class Store(Protocol):
    """What the app needs from persistence. Every backend passes ``tests/test_store.py``."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def get_account(self, account_id: str) -> Account | None: ...
    async def get_account_by_public_id(self, public_id: str) -> Account | None: ...
    async def list_accounts(self) -> list[Account]: ...
    async def put_account(self, account: Account) -> None: ...
    async def set_refresh_token(self, account_id: str, refresh_token: str) -> None: ...
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

    async def reseal_all(self) -> int:
        """Re-encrypt refresh tokens not sealed with the current key; returns how many."""
        ...
