"""Spotify's errors: one tree, each kind under its source-neutral one (:mod:`..base`)::

    SpotifyError                 (base.SourceError)
     ├── ReconnectRequired       (base.ReconnectRequired) the grant is gone
     │    └── InvalidGrant        token endpoint's invalid_grant (revoked, expired, bad code...)
     ├── InvalidClient            client id or secret wrong (our configuration)
     ├── InvalidRequest           token endpoint refused the request's shape
     ├── AccessTokenRejected      Web API 401: refresh once and retry
     ├── Forbidden               (base.Refused) Web API 403: re-authenticating won't help
     │    ├── NotRegistered       development mode: the user is not under User Management
     │    ├── PremiumRequired     development mode: the app's owner has no active Premium
     │    └── EndpointRemoved     development mode: an endpoint removed for the app (it answers
     │                            every call with a 429 without ``reason``; told apart by
     │                            :class:`~.source.Removals`)
     ├── RateLimited             (base.RateLimited) 429, with ``retry_after`` and ``reason``
     │                            (``QUOTA_EXCEEDED``: the development-mode quota, hours long;
     │                            ``budget``: our own call budget has no room, nothing was sent)
     ├── SpotifyUnavailable      (base.Unavailable) 5xx, timeouts, connection failures, a body
     │                            that cannot be decoded, any other ``httpx`` error
     └── BadResponse             (base.BadResponse) an answer the contract does not allow: a body
          │                       that does not parse, an unexpected status, a redirect loop
          └── MissingRefreshToken a code exchange without a refresh token

The tree is closed: every ``httpx`` exception raised while sending a request or reading its
answer leaves the client as one of these, chained (``raise ... from``) to the original.
"""

from __future__ import annotations

from typing import ClassVar

import httpx

from nowplaying.sources import base


class SpotifyError(base.SourceError):
    """Base of every error the client raises. ``response`` is kept when there was one."""

    def __init__(self, message: str, *, response: httpx.Response | None = None) -> None:
        Exception.__init__(self, message)
        self.response = response


class ReconnectRequired(SpotifyError, base.ReconnectRequired):
    """The grant is revoked or expired: the user must connect again."""


class InvalidGrant(ReconnectRequired):
    """``invalid_grant`` from the token endpoint; ``description`` says which."""

    def __init__(self, description: str, *, response: httpx.Response | None = None) -> None:
        super().__init__(f"invalid_grant: {description}", response=response)
        self.description = description


class InvalidClient(SpotifyError):
    """The client id or secret was refused."""


class InvalidRequest(SpotifyError):
    """The token endpoint refused the request (``invalid_request``, ``unsupported_grant_type``)."""


class AccessTokenRejected(SpotifyError):
    """401 from the Web API: the access token is missing, invalid or expired."""


class Forbidden(SpotifyError, base.Refused):
    """403 from the Web API; re-authenticating won't help. ``reason`` is Spotify's text;
    ``fix`` says, for a person, what to do about it."""

    kind: ClassVar[str] = "forbidden"
    fix: ClassVar[str] = (
        "Spotify refused this account's access (HTTP 403); reconnecting will not help. In"
        " development mode the app's owner must add the account in the Spotify Developer"
        " Dashboard."
    )

    def __init__(self, reason: str, *, response: httpx.Response | None = None) -> None:
        SpotifyError.__init__(self, f"forbidden: {reason}", response=response)
        self.reason = reason


class NotRegistered(Forbidden):
    """Development mode: the user is not added under User Management in the Developer Dashboard
    (Spotify's plain-text ``User not registered in the Developer Dashboard``)."""

    kind: ClassVar[str] = "not_registered"
    fix: ClassVar[str] = (
        "Spotify refuses this account: the app is in development mode and this Spotify user is"
        " not added under User Management in the Spotify Developer Dashboard (at most 5 users)."
        " The app's owner adds the account's e-mail address there, then it works again."
    )


class PremiumRequired(Forbidden):
    """Development mode: the app's owner has no active Premium subscription (Spotify's
    ``Active premium subscription required for the owner of the app.``)."""

    kind: ClassVar[str] = "premium_required"
    fix: ClassVar[str] = (
        "Spotify refuses every account of this app: in development mode the owner of the"
        " Spotify app (the Developer Dashboard account) needs an active Premium subscription."
        " Renew Premium on that account; nothing needs reconnecting."
    )


class EndpointRemoved(Forbidden, base.Withdrawn):
    """Spotify no longer serves this endpoint to the app (development mode, since April 2026):
    every call, the first too, is a 429 without ``reason``. Disabled for the app, not a pause."""

    kind: ClassVar[str] = "endpoint_removed"
    fix: ClassVar[str] = (
        "Spotify no longer serves this endpoint to development-mode apps: it answers every call"
        " with 429. The widget goes on without it (no last-played track when the endpoint is"
        " recently-played); extended quota mode in the Spotify Developer Dashboard restores it."
    )
    DISABLED: ClassVar[dict[str, str]] = {
        "currently-playing": "the widget cannot show what plays on Spotify (tracks pushed from"
        " players still reach it)",
        "recently-played": "the last played track and the recently-played card are not shown",
    }
    """What goes without each endpoint, for the owner."""

    def __init__(self, endpoint: str) -> None:
        Forbidden.__init__(self, f"{endpoint} answers every call with 429 (removed for this app)")
        self.endpoint = self.what = endpoint
        self.disabled = self.DISABLED.get(endpoint, f"nothing is read from {endpoint}")


def classify_forbidden(reason: str, *, response: httpx.Response | None = None) -> Forbidden:
    """The 403 for Spotify's text: its two development-mode refusals have their own class.

    Spotify gives no code for them, only the text, so the text is matched (loosely: case and
    punctuation vary between answers seen).
    """
    text = reason.lower()
    if "not registered" in text:
        return NotRegistered(reason, response=response)
    if "premium" in text and "owner" in text:
        return PremiumRequired(reason, response=response)
    return Forbidden(reason, response=response)


class RateLimited(SpotifyError, base.RateLimited):
    """429: wait ``retry_after`` seconds. ``reason`` is e.g. ``QUOTA_EXCEEDED`` when given."""

    def __init__(
        self,
        retry_after: float,
        reason: str | None = None,
        *,
        response: httpx.Response | None = None,
    ) -> None:
        base.RateLimited.__init__(self, retry_after, reason)
        self.response = response


class SpotifyUnavailable(SpotifyError, base.Unavailable):
    """Spotify did not answer usefully: 5xx, a timeout, a connection failure."""


class BadResponse(SpotifyError, base.BadResponse):
    """Spotify answered with something the contract does not allow."""


class MissingRefreshToken(BadResponse):
    """The code exchange returned no refresh token: the grant could not be kept."""
