"""Persistence: widgets and their linked sources, sessions, pending logins, webhooks."""

from typing import TYPE_CHECKING, Any

from nowplaying.crypto import TokenCipher
from nowplaying.models import AccountStatus
from nowplaying.store.base import (
    Account,
    Delivery,
    LoginState,
    Pause,
    Session,
    SourceLink,
    Store,
    StoreError,
    Webhook,
    widget_id,
)
from nowplaying.store.sqlite import SQLiteStore

if TYPE_CHECKING:  # asyncpg is loaded only for a postgresql:// URL
    from nowplaying.store.postgres import PostgresStore

__all__ = [
    "Account",
    "AccountStatus",
    "Delivery",
    "LoginState",
    "Pause",
    "PostgresStore",
    "SQLiteStore",
    "Session",
    "SourceLink",
    "Store",
    "StoreError",
    "Webhook",
    "open_store",
    "widget_id",
]


def open_store(url: str, *, cipher: TokenCipher) -> Store:
    """The store a database URL names: ``sqlite:///path`` (``sqlite://`` in memory) or
    ``postgresql://...``."""
    if url in {"sqlite://", "sqlite:///:memory:"}:
        return SQLiteStore(":memory:", cipher=cipher)
    if url.startswith("sqlite:///"):
        return SQLiteStore(url.removeprefix("sqlite:///"), cipher=cipher)
    if url.startswith(("postgresql://", "postgres://")):
        from nowplaying.store.postgres import PostgresStore  # noqa: PLC0415 - asyncpg only here

        return PostgresStore(url, cipher=cipher)
    raise StoreError(f"unsupported database URL scheme: {url.split(':', 1)[0]!r}")


def __getattr__(name: str) -> Any:
    """``PostgresStore`` on first use, so a SQLite-only process never loads asyncpg."""
    if name == "PostgresStore":
        from nowplaying.store.postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
