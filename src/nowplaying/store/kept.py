"""Rotated refresh tokens the store refused, kept sealed in a file beside it until it takes them.

The file's space is reserved when it is opened (two slots of :data:`SLOT` bytes, written as
zeros), so a disk that fills later still takes the write: a slot is overwritten in place, never
grown. Each write goes to the slot the last one did not use, with a sequence number and a CRC,
and is fsynced; a torn write leaves the other slot readable. Tokens are sealed with the store's
cipher, bound to their account id, like every secret at rest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nowplaying.crypto import CryptoError, TokenCipher

log = logging.getLogger(__name__)

SLOT = 32 * 1024
"""Bytes per slot: about a hundred kept tokens (one is ~300 bytes sealed)."""
_MAGIC = b"NPK1"
_HEAD = struct.Struct(">4sQII")  # magic, sequence, payload length, CRC-32 of the payload


class KeptError(Exception):
    """The file could not be reserved, read or written."""


@dataclass(frozen=True, slots=True)
class KeptToken:
    """A rotated refresh token and the stored one it replaces (rotated away upstream)."""

    token: str = field(repr=False)
    replaces: str = field(repr=False)


class KeptTokens:
    """The file of kept tokens (``path``), opened with :meth:`open` before the first write."""

    def __init__(self, path: str | Path, cipher: TokenCipher) -> None:
        self.path = Path(path)
        self._cipher = cipher
        self._seq = 0
        self._slot = 1  # the next write goes to slot 0

    def open(self) -> dict[str, KeptToken]:
        """Reserve the file's space (if it is new or short) and read what it keeps: tokens no
        configured key opens are left out, with a warning."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _descriptor(self.path, os.O_RDWR | os.O_CREAT) as fd:
                size = os.fstat(fd).st_size
                if size < 2 * SLOT:
                    os.pwrite(fd, b"\0" * (2 * SLOT - size), size)
                    os.fsync(fd)
                slots = [os.pread(fd, SLOT, i * SLOT) for i in (0, 1)]
        except OSError as e:
            raise KeptError(f"cannot reserve {self.path}: {e.strerror}") from e
        # The newer slot; of two empty ones slot 1, so the first write goes to slot 0.
        best = max(((_read(slots[i]), i) for i in (1, 0)), key=lambda x: x[0][0])
        (self._seq, payload), self._slot = best
        return self._unseal(payload)

    def save(self, kept: Mapping[str, KeptToken]) -> None:
        """Replace what the file keeps with ``kept`` (sealed), durably: fsynced before return."""
        entries = [
            {
                "a": account_id,
                "t": self._cipher.seal(k.token, context=account_id),
                "r": self._cipher.seal(k.replaces, context=account_id),
            }
            for account_id, k in sorted(kept.items())
        ]
        payload = json.dumps(entries, separators=(",", ":")).encode()
        if _HEAD.size + len(payload) > SLOT:
            raise KeptError(f"{len(kept)} kept tokens do not fit in {self.path}")
        seq, slot = self._seq + 1, 1 - self._slot
        record = _HEAD.pack(_MAGIC, seq, len(payload), zlib.crc32(payload)) + payload
        try:
            with _descriptor(self.path, os.O_RDWR) as fd:
                os.pwrite(fd, record, slot * SLOT)
                os.fsync(fd)
        except OSError as e:
            raise KeptError(f"cannot write {self.path}: {e.strerror}") from e
        self._seq, self._slot = seq, slot

    def _unseal(self, payload: bytes) -> dict[str, KeptToken]:
        kept: dict[str, KeptToken] = {}
        try:
            entries = json.loads(payload) if payload else []
            for entry in entries:
                account_id = str(entry["a"])
                try:
                    kept[account_id] = KeptToken(
                        self._cipher.open(str(entry["t"]), context=account_id),
                        self._cipher.open(str(entry["r"]), context=account_id),
                    )
                except CryptoError:
                    log.warning("a kept refresh token opens with no configured key: left out")
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed %s", self.path.name)
        return kept


def _read(raw: bytes) -> tuple[int, bytes]:
    """A slot's sequence number and payload; (0, b"") for an empty, torn or foreign one."""
    if len(raw) < _HEAD.size:
        return 0, b""
    magic, seq, length, crc = _HEAD.unpack_from(raw)
    payload = raw[_HEAD.size : _HEAD.size + length]
    if magic != _MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
        return 0, b""
    return seq, payload


@contextlib.contextmanager
def _descriptor(path: Path, flags: int) -> Iterator[int]:
    """An ``os.open`` descriptor (mode 0600), closed on exit."""
    fd = os.open(path, flags, 0o600)
    try:
        yield fd
    finally:
        os.close(fd)
