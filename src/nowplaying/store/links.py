"""A widget's linked sources and its push token, in SQL: the queries and the store methods.

Every secret here is sealed with the store's cipher, bound to its row (:func:`seal_context`), and
re-sealed by ``reseal_all`` after a key rotation. A push token is found by its fingerprint (a
SHA-256 of 32 random bytes needs no key and no salt), so looking one up decrypts nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

from nowplaying.crypto import CryptoError, TokenCipher
from nowplaying.models import AccountStatus, SourceKind
from nowplaying.store.base import SourceLink

Row = Sequence[Any]
Step = tuple[str, Sequence[object]]
"""One statement of a transaction and its arguments."""

PUT_SOURCE = """INSERT INTO sources (account_id, kind, user_name, secret, status, connected_at)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (account_id, kind) DO UPDATE SET user_name = excluded.user_name,
        secret = excluded.secret, status = excluded.status,
        connected_at = excluded.connected_at"""
_SOURCE = "SELECT account_id, kind, user_name, secret, status, connected_at FROM sources"
SOURCE = f"{_SOURCE} WHERE account_id = ? AND kind = ?"
SOURCES_OF = f"{_SOURCE} WHERE account_id = ? ORDER BY kind"
LINKS_OF_KIND = f"{_SOURCE} WHERE kind = ? ORDER BY account_id"
ACCOUNT_OF_SOURCE = """SELECT account_id FROM sources WHERE kind = ? AND user_name = ?
    ORDER BY connected_at, account_id LIMIT 1"""
DELETE_SOURCE = "DELETE FROM sources WHERE account_id = ? AND kind = ?"
SET_SECRET = "UPDATE sources SET secret = ? WHERE account_id = ? AND kind = ?"
SET_SOURCE_STATUS = "UPDATE sources SET status = ? WHERE account_id = ? AND kind = ?"
SEALED_SECRETS = "SELECT account_id, kind, secret FROM sources"
RESEAL = "UPDATE sources SET secret = ? WHERE account_id = ? AND kind = ? AND secret = ?"

PUT_PUSH_TOKEN = """INSERT INTO push_tokens (account_id, fingerprint, secret) VALUES (?, ?, ?)
    ON CONFLICT (account_id) DO UPDATE SET fingerprint = excluded.fingerprint,
        secret = excluded.secret"""
PUSH_TOKEN = "SELECT secret FROM push_tokens WHERE account_id = ?"
PUSH_TOKEN_OWNER = "SELECT account_id FROM push_tokens WHERE fingerprint = ?"
SEALED_PUSH_TOKENS = "SELECT account_id, secret FROM push_tokens"
RESEAL_PUSH_TOKEN = "UPDATE push_tokens SET secret = ? WHERE account_id = ? AND secret = ?"

_PUSH_TOKEN = "push-token"
"""The sealing context's suffix for a push token (a kind of its own beside the sources')."""


def seal_context(account_id: str, kind: str) -> str:
    """What a secret is bound to. Spotify's is the account id alone: the migration to sources
    moved 0.1.0's sealed refresh tokens without a key, so their context could not change."""
    return account_id if kind == SourceKind.SPOTIFY else f"{account_id}/{kind}"


def fingerprint(token: str) -> str:
    """How a push token is found: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def source_from_row(row: Row, cipher: TokenCipher, *, unseal: bool) -> SourceLink:
    """A row of :data:`SOURCE`; a secret no configured key opens reads as ``key_missing``."""
    aid, kind, user, sealed, status, connected = row
    common: dict[str, Any] = {
        "account_id": str(aid),
        "kind": SourceKind(str(kind)),
        "user_name": str(user),
        "connected_at": float(connected),
    }
    try:
        secret = open_secret(cipher, str(sealed), seal_context(str(aid), str(kind)), unseal=unseal)
    except CryptoError:
        return SourceLink(
            **common, secret="", status=AccountStatus.RECONNECT_REQUIRED, key_missing=True
        )
    return SourceLink(**common, secret=secret, status=AccountStatus(str(status)))


def open_secret(cipher: TokenCipher, sealed: str, context: str, *, unseal: bool) -> str:
    """``sealed`` opened (``""`` with ``unseal=False``, nothing decrypted); CryptoError when no
    configured key sealed it."""
    if not cipher.knows(sealed):
        raise CryptoError("sealed with an unknown key")
    return cipher.open(sealed, context=context) if unseal else ""


class Backend(Protocol):
    """The primitives of :class:`~nowplaying.store.sql.SQLStore` the methods below run on."""

    _cipher: TokenCipher

    async def _execute(self, sql: str, *args: object) -> int: ...
    async def _fetchone(self, sql: str, *args: object) -> Row | None: ...
    async def _fetch(self, sql: str, *args: object) -> list[Row]: ...


def source_row(link: SourceLink, cipher: TokenCipher) -> tuple[object, ...]:
    """The arguments of :data:`PUT_SOURCE` for ``link``, its secret sealed."""
    sealed = cipher.seal(link.secret, context=seal_context(link.account_id, link.kind))
    kind, status = str(link.kind), str(link.status)
    return (link.account_id, kind, link.user_name, sealed, status, link.connected_at)


class LinkedSources:
    """The store's methods for sources and push tokens (a part of ``SQLStore``)."""

    async def put_source(self: Backend, link: SourceLink) -> None:
        await self._execute(PUT_SOURCE, *source_row(link, self._cipher))

    async def account_of_source(self: Backend, kind: SourceKind, user_name: str) -> str | None:
        row = await self._fetchone(ACCOUNT_OF_SOURCE, str(kind), user_name)
        return str(row[0]) if row else None

    async def list_links(self: Backend, kind: SourceKind) -> list[SourceLink]:
        rows = await self._fetch(LINKS_OF_KIND, str(kind))
        return [source_from_row(r, self._cipher, unseal=True) for r in rows]

    async def get_source(self: Backend, account_id: str, kind: SourceKind) -> SourceLink | None:
        row = await self._fetchone(SOURCE, account_id, str(kind))
        return source_from_row(row, self._cipher, unseal=True) if row else None

    async def list_sources(self: Backend, account_id: str) -> list[SourceLink]:
        rows = await self._fetch(SOURCES_OF, account_id)
        return [source_from_row(r, self._cipher, unseal=False) for r in rows]

    async def delete_source(self: Backend, account_id: str, kind: SourceKind) -> None:
        await self._execute(DELETE_SOURCE, account_id, str(kind))

    async def set_push_token(self: Backend, account_id: str, token: str) -> None:
        if not token:
            raise ValueError("refusing to store an empty push token")
        sealed = self._cipher.seal(token, context=seal_context(account_id, _PUSH_TOKEN))
        await self._execute(PUT_PUSH_TOKEN, account_id, fingerprint(token), sealed)

    async def get_push_token(self: Backend, account_id: str) -> str | None:
        row = await self._fetchone(PUSH_TOKEN, account_id)
        if row is None:
            return None
        try:
            return open_secret(
                self._cipher, str(row[0]), seal_context(account_id, _PUSH_TOKEN), unseal=True
            )
        except CryptoError:
            return None

    async def account_of_push_token(self: Backend, token: str) -> str | None:
        row = await self._fetchone(PUSH_TOKEN_OWNER, fingerprint(token))
        return str(row[0]) if row else None

    async def reseal_all(self: Backend) -> int:
        """Re-encrypt every secret not sealed with the current key; how many changed.

        Rows no configured key opens are left as they are (they read as ``key_missing``). Each
        row is replaced only if it still holds what was read, so a secret rotated meanwhile (by
        this process or another) is never overwritten with the old one.
        """
        changed = 0
        for aid, kind, sealed in await self._fetch(SEALED_SECRETS):
            resealed = _resealed(self._cipher, str(sealed), seal_context(str(aid), str(kind)))
            if resealed is not None:
                changed += await self._execute(RESEAL, resealed, aid, kind, sealed)
        for aid, sealed in await self._fetch(SEALED_PUSH_TOKENS):
            resealed = _resealed(self._cipher, str(sealed), seal_context(str(aid), _PUSH_TOKEN))
            if resealed is not None:
                changed += await self._execute(RESEAL_PUSH_TOKEN, resealed, aid, sealed)
        return changed


def _resealed(cipher: TokenCipher, sealed: str, context: str) -> str | None:
    """``sealed`` under the current key; None when it already is, or no key opens it."""
    if cipher.is_current(sealed):
        return None
    try:
        return cipher.seal(cipher.open(sealed, context=context), context=context)
    except CryptoError:
        return None
