"""Refresh-token sealing and cookie signing."""

from __future__ import annotations

import pytest

from nowplaying.crypto import CryptoError, Signer, TokenCipher

KEY = "k" * 40
OLD = "o" * 40


def test_seal_is_not_plaintext_and_opens() -> None:
    """A sealed token does not contain the token, and opens to it."""
    cipher = TokenCipher(KEY)
    sealed = cipher.seal("refresh-abc", context="user1")
    assert "refresh-abc" not in sealed
    assert cipher.open(sealed, context="user1") == "refresh-abc"


def test_seal_is_randomised() -> None:
    """Two seals of one token differ (fresh nonce each time)."""
    cipher = TokenCipher(KEY)
    assert cipher.seal("t", context="u") != cipher.seal("t", context="u")


def test_other_account_context_does_not_open() -> None:
    """A ciphertext moved to another account's row does not open."""
    cipher = TokenCipher(KEY)
    with pytest.raises(CryptoError):
        cipher.open(cipher.seal("t", context="alice"), context="mallory")


def test_wrong_key_does_not_open() -> None:
    """Another key cannot open it."""
    with pytest.raises(CryptoError):
        TokenCipher(OLD).open(TokenCipher(KEY).seal("t", context="u"), context="u")


@pytest.mark.parametrize("junk", ["", "v1", "v1:abc", "v1:abc:!!!", "v2:x:y", "v1:deadbeef:AAAA"])
def test_junk_is_refused(junk: str) -> None:
    """Anything not made by seal() raises CryptoError."""
    with pytest.raises(CryptoError):
        TokenCipher(KEY).open(junk, context="u")


def test_tampered_ciphertext_is_refused() -> None:
    """Flipping a character of the ciphertext breaks authentication."""
    cipher = TokenCipher(KEY)
    sealed = cipher.seal("token", context="u")
    last = sealed[-2]
    tampered = sealed[:-2] + ("A" if last != "A" else "B") + sealed[-1]
    with pytest.raises(CryptoError):
        cipher.open(tampered, context="u")


def test_key_rotation_old_opens_new_seals() -> None:
    """After rotation the old key still opens old rows; new seals use the new key."""
    old_sealed = TokenCipher(OLD).seal("t", context="u")
    rotated = TokenCipher(KEY, [OLD])
    assert rotated.open(old_sealed, context="u") == "t"
    assert not rotated.is_current(old_sealed)
    assert rotated.is_current(rotated.seal("t", context="u"))


def test_signer_round_trip_and_tamper() -> None:
    """Signed values come back; altered or unsigned ones do not."""
    signer = Signer(KEY, "session")
    signed = signer.sign("abc")
    assert signer.unsign(signed) == "abc"
    assert signer.unsign(signed[:-1]) is None
    assert signer.unsign("abc") is None
    assert signer.unsign("x" + signed) is None
    assert Signer(KEY, "other-purpose").unsign(signed) is None


def test_signer_accepts_old_keys_and_signs_with_the_current_one() -> None:
    """After a rotation, values signed with a listed old key verify; new ones use the new key."""
    signed_before = Signer(OLD, "session").sign("abc")
    rotated = Signer(KEY, "session", old_secrets=[OLD])
    assert rotated.unsign(signed_before) == "abc"
    assert rotated.sign("abc") == Signer(KEY, "session").sign("abc")
    assert Signer(OLD, "session").unsign(rotated.sign("abc")) is None


def test_signer_without_the_old_key_refuses_its_signatures() -> None:
    """Rotating without listing the old key: its signatures no longer verify (logged out)."""
    signed_before = Signer(OLD, "session").sign("abc")
    assert Signer(KEY, "session").unsign(signed_before) is None
    assert Signer(KEY, "session", old_secrets=["x" * 40]).unsign(signed_before) is None
    assert Signer(KEY, "other", old_secrets=[OLD]).unsign(signed_before) is None
