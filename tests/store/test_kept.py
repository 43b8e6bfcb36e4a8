"""The file of kept refresh tokens: reserved at open, sealed, durable across a torn write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from harness.disk import fill

from nowplaying.crypto import TokenCipher
from nowplaying.store.kept import SLOT, KeptError, KeptToken, KeptTokens

KEY = "kept-tests-secret-key-0123456789abcdefghijkl"
OTHER_KEY = "kept-tests-other-key-0123456789abcdefghijkl"


def test_what_is_saved_is_read_back_sealed(tmp_path: Path) -> None:
    """A save is read by the next open (a restart); no token is on disk in the clear. The
    state directory is made if it is missing."""
    path = tmp_path / "state" / "kept-tokens"
    kept = KeptTokens(path, TokenCipher(KEY))
    assert kept.open() == {}
    assert path.stat().st_size == 2 * SLOT
    tokens = {"alice": KeptToken("AQnew-token", "AQold-token")}
    kept.save(tokens)
    assert b"AQnew-token" not in path.read_bytes() and b"AQold-token" not in path.read_bytes()
    assert KeptTokens(path, TokenCipher(KEY)).open() == tokens
    kept.save({})
    assert KeptTokens(path, TokenCipher(KEY)).open() == {}


def test_a_torn_write_leaves_the_last_good_one(tmp_path: Path) -> None:
    """Each write goes to the other slot: damage to the newest falls back to the one before."""
    path = tmp_path / "kept-tokens"
    kept = KeptTokens(path, TokenCipher(KEY))
    kept.open()
    first = {"alice": KeptToken("t1", "t0")}
    kept.save(first)
    kept.save({"alice": KeptToken("t2", "t1")})  # slot 1
    with path.open("r+b") as f:
        f.seek(SLOT + 30)
        f.write(b"\xff\xff")
    assert KeptTokens(path, TokenCipher(KEY)).open() == first


def test_a_token_no_configured_key_opens_is_left_out(tmp_path: Path) -> None:
    path = tmp_path / "kept-tokens"
    kept = KeptTokens(path, TokenCipher(OTHER_KEY))
    kept.open()
    kept.save({"alice": KeptToken("t1", "t0")})
    assert KeptTokens(path, TokenCipher(KEY)).open() == {}


def test_the_reserved_space_takes_a_write_on_a_full_disk(small_disk: Path) -> None:
    """Reserved before the disk filled, the file takes a save when nothing else can grow."""
    path = small_disk / "kept-tokens"
    kept = KeptTokens(path, TokenCipher(KEY))
    kept.open()
    fill(small_disk)
    with pytest.raises(OSError, match="No space left"):
        (small_disk / "more").write_bytes(os.urandom(8192))
    tokens = {"alice": KeptToken("t1", "t0")}
    kept.save(tokens)
    assert KeptTokens(path, TokenCipher(KEY)).open() == tokens


def test_a_file_that_cannot_be_reserved_says_so(small_disk: Path) -> None:
    fill(small_disk)
    with pytest.raises(KeptError, match="cannot reserve"):
        KeptTokens(small_disk / "kept-tokens", TokenCipher(KEY)).open()
