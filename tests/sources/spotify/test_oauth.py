"""Spotify's OAuth: PKCE, and the token endpoint's recorded answers read into tokens or errors."""

from __future__ import annotations

import httpx
import pytest
from harness.helpers import fixture_json

from nowplaying.sources.spotify.errors import InvalidClient, InvalidGrant, SpotifyError
from nowplaying.sources.spotify.oauth import pkce_challenge, raise_for_token_error, token_from


def test_pkce_challenge_matches_rfc7636_example() -> None:
    """The S256 challenge of RFC 7636's appendix B verifier."""
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [("token-refresh-no-rotation.json", "old-refresh"), ("token-refresh-rotated.json", None)],
)
def test_refresh_fixtures(fixture: str, expected: str | None) -> None:
    """Recorded refresh answers: without a refresh token the old one is kept; with one, it wins."""
    body = fixture_json(fixture)
    answer = httpx.Response(200, json=body)
    token = token_from(answer, started=1000.0, previous_refresh="old-refresh")
    assert token.refresh_token == (expected or body["refresh_token"])
    assert token.expires_at == 1000.0 + 3600
    assert token.access_token == body["access_token"]


@pytest.mark.parametrize(
    ("fixture", "error"),
    [
        ("token-error-revoked.json", InvalidGrant),
        ("token-error-invalid-client.json", InvalidClient),
    ],
)
def test_token_error_fixtures(fixture: str, error: type[SpotifyError]) -> None:
    """Recorded token errors map to the error tree."""
    answer = httpx.Response(400, json=fixture_json(fixture))
    with pytest.raises(error):
        raise_for_token_error(answer)
    with pytest.raises(error):
        token_from(answer, started=0.0, previous_refresh="r")


def test_token_authorization_code_fixture() -> None:
    """The recorded code-exchange answer becomes a token: access, refresh, scope, expiry."""
    body = fixture_json("token-authorization-code.json")
    token = token_from(httpx.Response(200, json=body), started=1000.0, previous_refresh=None)
    assert token.access_token == body["access_token"]
    assert token.refresh_token == body["refresh_token"]
    assert token.scope == frozenset({"user-read-birthdate", "user-read-email"})
    assert token.expires_at == 1000.0 + 3600
