"""Spotify's OAuth: scopes, PKCE, the client's credentials, the token endpoint's answers read."""

from __future__ import annotations

import base64
import hashlib
import math
import secrets

import httpx

from nowplaying.models import Token
from nowplaying.sources.spotify.errors import (
    BadResponse,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
)
from nowplaying.sources.spotify.parsing import NotJSON, json_body, json_object, raise_for_common

SCOPE_CURRENTLY_PLAYING = "user-read-currently-playing"
SCOPE_RECENTLY_PLAYED = "user-read-recently-played"


def make_pkce() -> tuple[str, str]:
    """A PKCE pair: (verifier of 64 URL-safe characters, S256 challenge)."""
    verifier = secrets.token_urlsafe(48)
    return verifier, pkce_challenge(verifier)


def pkce_challenge(verifier: str) -> str:
    """base64url(SHA-256(verifier)), without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def basic_auth(client_id: str, client_secret: str) -> str:
    """The token endpoint's ``Authorization`` header for a confidential client."""
    pair = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
    return f"Basic {pair}"


def token_from(response: httpx.Response, *, started: float, previous_refresh: str | None) -> Token:
    """The token endpoint's answer as a :class:`Token` (its expiry counted from ``started``), or
    its refusal raised. No new refresh token in the answer: ``previous_refresh`` is kept."""
    if response.status_code != 200:
        raise_for_token_error(response)
    body = json_object(response)
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise BadResponse("token response without access_token", response=response)
    try:
        expires_in = float(body.get("expires_in", 3600))
    except (TypeError, ValueError) as e:
        raise BadResponse("token response with a bad expires_in", response=response) from e
    if not math.isfinite(expires_in) or expires_in <= 0:
        raise BadResponse("token response with a bad expires_in", response=response)
    new_refresh = body.get("refresh_token")
    if new_refresh is not None and not isinstance(new_refresh, str):
        raise BadResponse("token response with a bad refresh_token", response=response)
    return Token(
        access_token=access,
        expires_at=started + expires_in,
        scope=frozenset(str(body.get("scope") or "").split()),
        refresh_token=new_refresh or previous_refresh,
        token_type=str(body.get("token_type") or "Bearer"),
    )


def raise_for_token_error(response: httpx.Response) -> None:
    """Raise the error a token endpoint's non-200 answer means (always raises)."""
    raise_for_common(response)
    try:
        body = json_body(response)
    except NotJSON as e:
        raise BadResponse(
            f"token endpoint answered {response.status_code}", response=response
        ) from e
    if not isinstance(body, dict):
        raise BadResponse("token error is not an object", response=response)
    error = str(body.get("error") or "")
    description = str(body.get("error_description") or "")
    if error == "invalid_grant":
        raise InvalidGrant(description, response=response)
    if error == "invalid_client":
        raise InvalidClient(f"invalid_client: {description}", response=response)
    if error in {"invalid_request", "unsupported_grant_type", "invalid_scope"}:
        raise InvalidRequest(f"{error}: {description}", response=response)
    raise BadResponse(f"token endpoint answered {response.status_code} {error}", response=response)
