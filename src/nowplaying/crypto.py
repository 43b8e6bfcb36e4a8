"""Keys derived from ``NOWPLAYING_SECRET_KEY``: refresh-token encryption and cookie signing.

Refresh tokens are sealed with AES-256-GCM under a key derived by HKDF, with the account id as
associated data (a ciphertext copied to another account's row does not open). Each ciphertext
names the key that sealed it, so after a key rotation the old keys still open old rows while the
new key seals everything written from then on (``nowplaying rotate-key`` re-seals the rest).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_PREFIX = "v1"


class CryptoError(Exception):
    """A ciphertext could not be opened: wrong key, tampered data, or not ours."""


def derive(secret: str, purpose: str) -> bytes:
    """A 32-byte key for one purpose, derived from the configured secret."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"nowplaying", info=purpose.encode()
    ).derive(secret.encode())


class TokenCipher:
    """Seals and opens refresh tokens. ``old_secrets`` only open; ``secret`` seals."""

    def __init__(self, secret: str, old_secrets: Sequence[str] = ()) -> None:
        keys = [derive(s, "refresh-token") for s in (secret, *old_secrets)]
        self._current_id = _key_id(keys[0])
        self._keys = {_key_id(k): AESGCM(k) for k in keys}

    def seal(self, plaintext: str, *, context: str) -> str:
        """Encrypt ``plaintext`` bound to ``context`` (the account id)."""
        nonce = os.urandom(12)
        ct = self._keys[self._current_id].encrypt(nonce, plaintext.encode(), context.encode())
        blob = base64.urlsafe_b64encode(nonce + ct).decode("ascii")
        return f"{_PREFIX}:{self._current_id}:{blob}"

    def open(self, sealed: str, *, context: str) -> str:
        """Decrypt what :meth:`seal` produced under the same ``context``."""
        try:
            prefix, key_id, blob = sealed.split(":", 2)
            raw = base64.urlsafe_b64decode(blob.encode("ascii"))
        except ValueError as e:
            raise CryptoError("not a sealed token") from e
        aead = self._keys.get(key_id)
        if prefix != _PREFIX or aead is None or len(raw) < 13:
            raise CryptoError("sealed with an unknown key")
        try:
            return aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag as e:
            raise CryptoError("ciphertext does not open with this key and context") from e

    def knows(self, sealed: str) -> bool:
        """Whether a configured key sealed ``sealed``, read from the key id it carries.

        Nothing is decrypted: read paths that never use the token (public links, sessions, the
        owner page) tell an unknown-key account apart with this alone.
        """
        prefix, _, rest = sealed.partition(":")
        return prefix == _PREFIX and rest.partition(":")[0] in self._keys

    def is_current(self, sealed: str) -> bool:
        """Whether ``sealed`` was made with the current key (else it needs re-sealing)."""
        return sealed.startswith(f"{_PREFIX}:{self._current_id}:")


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"key-id" + key).hexdigest()[:8]


class Signer:
    """HMAC-SHA256 signatures for opaque cookie values (stdlib ``hmac``; nothing to add).

    Signs with ``secret`` only; verifies with it and every one of ``old_secrets``, so cookies
    signed before a key rotation stay valid while the old key is listed.
    """

    def __init__(self, secret: str, purpose: str, old_secrets: Sequence[str] = ()) -> None:
        self._keys = [derive(s, purpose) for s in (secret, *old_secrets)]

    def sign(self, value: str) -> str:
        return f"{value}.{_mac(self._keys[0], value)}"

    def unsign(self, signed: str) -> str | None:
        """The value, or None when the signature is missing or made with no key of ours."""
        value, _, mac = signed.rpartition(".")
        # compare_digest takes str only when ASCII: anything else is simply not our signature.
        if not value or not mac.isascii():
            return None
        if any(hmac.compare_digest(mac, _mac(key, value)) for key in self._keys):
            return value
        return None


def _mac(key: bytes, value: str) -> str:
    digest = hmac.new(key, value.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def fingerprint(value: str) -> str:
    """A one-way id for a secret value (session ids are stored only as this)."""
    return hashlib.sha256(value.encode()).hexdigest()
