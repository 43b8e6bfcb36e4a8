"""Spotify Accounts, simulated: apps, users, consents, authorization codes and tokens.

A consent (a user's "Agree" for one app and a set of scopes) fixes when its refresh tokens
expire: refreshing does not extend it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from nowplaying.clock import Clock

RefreshMode = Literal["omit", "rotate"]
ACCESS_TOKEN_LIFETIME = 3600
CODE_LIFETIME = 600
_PRUNE_AT = 10_000


class TokenError(Exception):
    """A token request Spotify would refuse with HTTP 400."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description

    def as_json(self) -> dict[str, str]:
        """The body Spotify sends."""
        return {"error": self.error, "error_description": self.description}


@dataclass(slots=True)
class Client:
    """A registered app."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    name: str
    owner_premium: bool = True
    allowlist: frozenset[str] | None = None  # None: every user may use the app


@dataclass(frozen=True, slots=True)
class User:
    """A Spotify account."""

    user_id: str
    display_name: str
    product: str = "premium"
    country: str = "SE"


@dataclass(frozen=True, slots=True)
class Grant:
    """Tokens handed out by a code exchange, a refresh or :meth:`Accounts.grant`."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float
    scopes: tuple[str, ...]
    user_id: str
    client_id: str
    expires_in: int = ACCESS_TOKEN_LIFETIME

    @property
    def scope(self) -> str:
        """The scopes, space-separated, as in the token response."""
        return " ".join(self.scopes)

    def as_json(self) -> dict[str, Any]:
        """The token response body (``refresh_token`` only when one was issued)."""
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "scope": self.scope,
            "expires_in": self.expires_in,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        return body


@dataclass(slots=True)
class Consent:
    """A user's agreement to let one app use some scopes."""

    user_id: str
    client_id: str
    scopes: tuple[str, ...]
    refresh_expires_at: float
    public: bool  # made through PKCE, so it may be refreshed without the client secret
    revoked: bool = False


@dataclass(slots=True)
class AccessToken:
    """A live access token and what it grants."""

    consent: Consent
    expires_at: float
    expired: bool = False


@dataclass(slots=True)
class _RefreshToken:
    consent: Consent
    rotated: bool = False


@dataclass(slots=True)
class _Code:
    client_id: str
    redirect_uri: str
    user_id: str
    scopes: tuple[str, ...]
    challenge: str | None
    expires_at: float
    used: bool = False


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge for ``verifier``: base64url of its SHA-256, no padding."""
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Accounts:
    """The accounts service's state."""

    def __init__(
        self,
        clock: Clock,
        *,
        refresh_mode: RefreshMode = "omit",
        refresh_token_lifetime: float = 182 * 86400,
    ) -> None:
        self.clock = clock
        self.refresh_mode: RefreshMode = refresh_mode
        self.refresh_token_lifetime = refresh_token_lifetime
        self.clients: dict[str, Client] = {}
        self.users: dict[str, User] = {}
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._consents: list[Consent] = []
        self._agreed: dict[tuple[str, str], set[str]] = {}
        self.app_tokens_issued = 0

    # -- registration ----------------------------------------------------------------------

    def add_client(
        self,
        client_id: str,
        client_secret: str,
        redirect_uris: Iterable[str],
        *,
        name: str | None = None,
        owner_premium: bool = True,
        allowlist: Iterable[str] | None = None,
    ) -> Client:
        """Register an app (replacing one with the same id)."""
        client = Client(
            client_id,
            client_secret,
            tuple(redirect_uris),
            name or f"App {client_id}",
            owner_premium,
            frozenset(allowlist) if allowlist is not None else None,
        )
        self.clients[client_id] = client
        return client

    def add_user(
        self, user_id: str, display_name: str, *, product: str = "premium", country: str = "SE"
    ) -> User:
        """Create a Spotify account (replacing one with the same id)."""
        user = User(user_id, display_name, product, country)
        self.users[user_id] = user
        return user

    # -- authorization codes ---------------------------------------------------------------

    def issue_code(
        self,
        client_id: str,
        redirect_uri: str,
        user_id: str,
        scopes: tuple[str, ...],
        challenge: str | None,
    ) -> str:
        """A single-use code for the token endpoint, valid for ten minutes."""
        code = secrets.token_urlsafe(48)
        expires_at = self.clock.now() + CODE_LIFETIME
        self._codes[code] = _Code(client_id, redirect_uri, user_id, scopes, challenge, expires_at)
        return code

    def agree(self, user_id: str, client_id: str, scopes: Iterable[str]) -> None:
        """Remember that the user said "Agree" to these scopes for this app."""
        self._agreed.setdefault((user_id, client_id), set()).update(scopes)

    def has_agreed(self, user_id: str, client_id: str, scopes: Iterable[str]) -> bool:
        """Whether the user agreed to all of ``scopes`` for this app (and has not revoked)."""
        return set(scopes) <= self._agreed.get((user_id, client_id), set())

    # -- the token endpoint ----------------------------------------------------------------

    def authenticate(
        self, authorization: str | None, form: Mapping[str, str]
    ) -> tuple[Client, bool]:
        """The calling app and whether it proved its secret (False: a PKCE public client)."""
        if authorization is not None and authorization[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError) as e:
                raise TokenError("invalid_client", "Invalid client") from e
            client_id, sep, secret = decoded.partition(":")
            if not sep:
                raise TokenError("invalid_client", "Invalid client")
            return self._check_secret(client_id, secret), True
        client_id = form.get("client_id", "")
        if "client_secret" in form:
            return self._check_secret(client_id, form["client_secret"]), True
        client = self.clients.get(client_id)
        if client is None:
            raise TokenError("invalid_client", "Invalid client")
        return client, False

    def _check_secret(self, client_id: str, secret: str) -> Client:
        client = self.clients.get(client_id)
        if client is None:
            raise TokenError("invalid_client", "Invalid client")
        if not hmac.compare_digest(client.client_secret.encode(), secret.encode()):
            raise TokenError("invalid_client", "Invalid client secret")
        return client

    def exchange_code(self, client: Client, confidential: bool, form: Mapping[str, str]) -> Grant:
        """Trade an authorization code for tokens."""
        code = self._codes.get(form.get("code", ""))
        if (
            code is None
            or code.used
            or code.client_id != client.client_id
            or self.clock.now() >= code.expires_at
        ):
            raise TokenError("invalid_grant", "Invalid authorization code")
        if form.get("redirect_uri") != code.redirect_uri:
            raise TokenError("invalid_grant", "Invalid redirect URI")
        verifier = form.get("code_verifier")
        if verifier is None and (code.challenge is not None or not confidential):
            raise TokenError("invalid_request", "code_verifier required")
        if verifier is not None and (
            code.challenge is None
            or not hmac.compare_digest(pkce_challenge(verifier), code.challenge)
        ):
            raise TokenError("invalid_grant", "code_verifier was incorrect")
        code.used = True
        consent = self._consent(
            code.user_id, client.client_id, code.scopes, public=not confidential
        )
        return self._issue(consent, with_refresh=True)

    def refresh(self, client: Client, confidential: bool, form: Mapping[str, str]) -> Grant:
        """Trade a refresh token for a new access token (and, in "rotate" mode, refresh token)."""
        token = form.get("refresh_token", "")
        record = self._refresh.get(token)
        if record is None or record.consent.client_id != client.client_id:
            raise TokenError("invalid_grant", "Invalid refresh token")
        if not confidential and not record.consent.public:
            raise TokenError("invalid_client", "Invalid client secret")
        if record.rotated or record.consent.revoked:
            raise TokenError("invalid_grant", "Refresh token revoked")
        if self.clock.now() >= record.consent.refresh_expires_at:
            raise TokenError("invalid_grant", "Refresh token expired")
        rotate = self.refresh_mode == "rotate"
        if rotate:
            record.rotated = True
        return self._issue(record.consent, with_refresh=rotate)

    def app_token(self, client: Client, confidential: bool) -> dict[str, Any]:
        """The client-credentials grant: an app token, no user, no scope, no refresh token.

        Only a client that proved its secret gets one (a public client has no secret to prove).
        The token reads no user data, so the Web API does not know it (401 everywhere).
        """
        if not confidential:
            raise TokenError("invalid_client", "Invalid client")
        self.app_tokens_issued += 1
        return {
            "access_token": secrets.token_urlsafe(48),
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME,
        }

    # -- shortcuts and admin ---------------------------------------------------------------

    def grant(self, user_id: str, scopes: Iterable[str], client_id: str) -> Grant:
        """Consent and tokens without the consent page (refreshable with or without the secret)."""
        if user_id not in self.users:
            raise KeyError(user_id)
        if client_id not in self.clients:
            raise KeyError(client_id)
        consent = self._consent(user_id, client_id, tuple(scopes), public=True)
        return self._issue(consent, with_refresh=True)

    def access(self, token: str) -> AccessToken | None:
        """The live access token ``token``, or None if it is unknown, expired or revoked."""
        record = self._access.get(token)
        if (
            record is None
            or record.expired
            or record.consent.revoked
            or self.clock.now() >= record.expires_at
        ):
            return None
        return record

    def expire_access_tokens(self, user_id: str | None = None) -> None:
        """Make the user's (or everyone's) current access tokens answer 401."""
        for record in self._access.values():
            if user_id is None or record.consent.user_id == user_id:
                record.expired = True

    def revoke(self, user_id: str) -> None:
        """The user removed every app: their tokens stop working."""
        for consent in self._consents:
            if consent.user_id == user_id:
                consent.revoked = True
        for key in [key for key in self._agreed if key[0] == user_id]:
            del self._agreed[key]

    # -- internals -------------------------------------------------------------------------

    def _consent(
        self, user_id: str, client_id: str, scopes: tuple[str, ...], *, public: bool
    ) -> Consent:
        consent = Consent(
            user_id,
            client_id,
            scopes,
            self.clock.now() + self.refresh_token_lifetime,
            public,
        )
        self._consents.append(consent)
        return consent

    def _issue(self, consent: Consent, *, with_refresh: bool) -> Grant:
        if len(self._access) >= _PRUNE_AT:
            self._prune()
        access = secrets.token_urlsafe(64)
        expires_at = self.clock.now() + ACCESS_TOKEN_LIFETIME
        self._access[access] = AccessToken(consent, expires_at)
        refresh = None
        if with_refresh:
            refresh = secrets.token_urlsafe(64)
            self._refresh[refresh] = _RefreshToken(consent)
        return Grant(
            access, refresh, expires_at, consent.scopes, consent.user_id, consent.client_id
        )

    def _prune(self) -> None:
        """Forget dead access tokens and codes, so long benchmarks do not grow without bound."""
        now = self.clock.now()
        self._access = {
            token: record
            for token, record in self._access.items()
            if not (record.expired or record.consent.revoked or now >= record.expires_at)
        }
        self._codes = {
            code: record
            for code, record in self._codes.items()
            if not record.used and now < record.expires_at
        }
