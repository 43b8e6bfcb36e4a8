"""The Spotify client: OAuth (authorization code + PKCE) and the few Web API calls a widget needs.

The client holds no state: tokens are handed in and handed back. The HTTP transport is injected
(`httpx.AsyncClient`), so tests run it against the simulator in-process.

Errors, one tree::

    SpotifyError
     ├── ReconnectRequired        the grant is gone: re-authenticating is the only fix
     │    └── InvalidGrant        token endpoint's invalid_grant (revoked, expired, bad code...)
     ├── InvalidClient            client id or secret wrong (our configuration)
     ├── InvalidRequest           token endpoint refused the request's shape
     ├── AccessTokenRejected      Web API 401: refresh once and retry
     ├── Forbidden                Web API 403: re-authenticating won't help
     │    ├── NotRegistered       development mode: the user is not under User Management
     │    └── PremiumRequired     development mode: the app's owner has no active Premium
     ├── RateLimited              429, with ``retry_after`` seconds and Spotify's ``reason``
     │                            (``quota``: the development-mode QUOTA_EXCEEDED, hours long;
     │                            ``budget``: our own call budget has no room, nothing was sent)
     ├── SpotifyUnavailable       5xx, timeouts, connection failures, a body that cannot be
     │                            decoded (Content-Encoding), any other ``httpx`` error
     └── BadResponse              an answer the contract does not allow: a body that does not
                                  parse, an unexpected status, a redirect loop

The tree is closed: every ``httpx`` exception raised while sending a request or reading its
answer leaves this module as one of these, chained (``raise ... from``) to the original.
"""

from __future__ import annotations

import base64
import hashlib
import math
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr

from nowplaying.clock import Clock, SystemClock
from nowplaying.models import Item, Kind, NowPlaying, PlayedItem, Profile, Token
from nowplaying.sources.budget import CallBudget, OverBudget

SCOPE_CURRENTLY_PLAYING = "user-read-currently-playing"
SCOPE_RECENTLY_PLAYED = "user-read-recently-played"
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
DEFAULT_DEADLINE = 8.0
# Token calls get longer: giving up on a refresh that Spotify then completes *with rotation*
# loses the new refresh token (the old one is revoked by then), and with it the account.
TOKEN_TIMEOUT = httpx.Timeout(15.0, connect=3.0)
TOKEN_DEADLINE = 20.0
TOKEN_BUDGET_WAIT = 15.0
"""A token call waits at most this long for room in the call budget: with its deadline it stays
within the 40 s the cross-instance refresh lock lives (``coord_redis``), so a refresh never
outlives its lock."""
QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
"""``RateLimited.reason`` of the development-mode quota (equal to ``store.QUOTA_EXCEEDED``)."""
MAX_RETRY_AFTER = 86400.0
"""A longer (or non-finite) Retry-After is read as this: a day, then Spotify is asked again."""


class SpotifyError(Exception):
    """Base of every error this client raises. ``response`` is kept when there was one."""

    def __init__(self, message: str, *, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.response = response


class ReconnectRequired(SpotifyError):
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


class Forbidden(SpotifyError):
    """403 from the Web API; re-authenticating won't help. ``reason`` is Spotify's text;
    ``fix`` says, for a person, what to do about it."""

    fix: ClassVar[str] = (
        "Spotify refused this account's access (HTTP 403); reconnecting will not help. In"
        " development mode the app's owner must add the account in the Spotify Developer"
        " Dashboard."
    )

    def __init__(self, reason: str, *, response: httpx.Response | None = None) -> None:
        super().__init__(f"forbidden: {reason}", response=response)
        self.reason = reason


class NotRegistered(Forbidden):
    """Development mode: the user is not added under User Management in the Developer Dashboard
    (Spotify's plain-text ``User not registered in the Developer Dashboard``)."""

    fix: ClassVar[str] = (
        "Spotify refuses this account: the app is in development mode and this Spotify user is"
        " not added under User Management in the Spotify Developer Dashboard (at most 5 users)."
        " The app's owner adds the account's e-mail address there, then it works again."
    )


class PremiumRequired(Forbidden):
    """Development mode: the app's owner has no active Premium subscription (Spotify's
    ``Active premium subscription required for the owner of the app.``)."""

    fix: ClassVar[str] = (
        "Spotify refuses every account of this app: in development mode the owner of the"
        " Spotify app (the Developer Dashboard account) needs an active Premium subscription."
        " Renew Premium on that account; nothing needs reconnecting."
    )


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


class RateLimited(SpotifyError):
    """429: wait ``retry_after`` seconds. ``reason`` is e.g. ``QUOTA_EXCEEDED`` when given."""

    def __init__(
        self,
        retry_after: float,
        reason: str | None = None,
        *,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(
            f"rate limited for {retry_after:g}s ({reason or 'no reason'})", response=response
        )
        self.retry_after = retry_after
        self.reason = reason

    @property
    def quota(self) -> bool:
        """The development-mode quota (``QUOTA_EXCEEDED``), not the rolling-window limit."""
        return self.reason == QUOTA_EXCEEDED


class SpotifyUnavailable(SpotifyError):
    """Spotify did not answer usefully: 5xx, a timeout, a connection failure."""


class BadResponse(SpotifyError):
    """Spotify answered with something the contract does not allow."""


def make_pkce() -> tuple[str, str]:
    """A PKCE pair: (verifier of 64 URL-safe characters, S256 challenge)."""
    verifier = secrets.token_urlsafe(48)
    return verifier, pkce_challenge(verifier)


def pkce_challenge(verifier: str) -> str:
    """base64url(SHA-256(verifier)), without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class SpotifyClient:
    """Talks to Spotify's Accounts service and Web API for one app (a confidential client)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        client_id: str,
        client_secret: SecretStr,
        accounts_url: str = "https://accounts.spotify.com",
        api_url: str = "https://api.spotify.com/v1",
        authorize_url: str | None = None,
        clock: Clock | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        deadline: float = DEFAULT_DEADLINE,
        token_timeout: httpx.Timeout = TOKEN_TIMEOUT,
        token_deadline: float = TOKEN_DEADLINE,
        budget: CallBudget | None = None,
    ) -> None:
        self._http = http
        self.budget = budget
        """Every request spends from it first (None: unmetered)."""
        self.client_id = client_id
        self._secret = client_secret
        self.accounts_url = accounts_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self._authorize_base = (authorize_url or self.accounts_url).rstrip("/")
        self._clock = clock or SystemClock()
        self._timeout = timeout
        self._deadline = deadline
        self._token_timeout = token_timeout
        self._token_deadline = token_deadline

    # -- OAuth ---------------------------------------------------------------------------------

    def authorize_url(
        self,
        *,
        redirect_uri: str,
        state: str,
        code_challenge: str,
        scopes: Sequence[str] = (SCOPE_CURRENTLY_PLAYING,),
        show_dialog: bool = False,
    ) -> str:
        """The URL to send the browser to for consent."""
        query = {
            "client_id": self.client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "state": state,
            "scope": " ".join(scopes),
            "code_challenge_method": "S256",
            "code_challenge": code_challenge,
        }
        if show_dialog:
            query["show_dialog"] = "true"
        return f"{self._authorize_base}/authorize?{urlencode(query)}"

    async def exchange_code(self, *, code: str, redirect_uri: str, code_verifier: str) -> Token:
        """Trade an authorization code for tokens (Basic auth, with the PKCE verifier)."""
        return await self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            },
            previous_refresh=None,
        )

    async def refresh(self, refresh_token: str) -> Token:
        """A fresh access token. When Spotify sends no new refresh token, the old one is kept."""
        return await self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token},
            previous_refresh=refresh_token,
        )

    async def check_credentials(self) -> Token:
        """The client-credentials grant: an app token, proving the client id and secret right
        (``InvalidClient`` when not) before anyone logs in. Reads no user data."""
        return await self._token_request(
            {"grant_type": "client_credentials"}, previous_refresh=None
        )

    async def _token_request(
        self, form: Mapping[str, str], *, previous_refresh: str | None
    ) -> Token:
        basic = base64.b64encode(
            f"{self.client_id}:{self._secret.get_secret_value()}".encode()
        ).decode("ascii")
        started = self._clock.now()
        response = await self._send(
            "POST",
            f"{self.accounts_url}/api/token",
            data=dict(form),
            headers={"Authorization": f"Basic {basic}"},
            phases=self._token_timeout,
            deadline=self._token_deadline,
            budget_wait=TOKEN_BUDGET_WAIT,
        )
        if response.status_code == 200:
            body = _json_object(response)
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
        _raise_for_token_error(response)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- Web API -------------------------------------------------------------------------------

    async def currently_playing(
        self, access_token: str, *, market: str | None = None
    ) -> NowPlaying:
        """What plays now. Spotify's 204 (nothing, no device, private session) is NOTHING."""
        params = {"additional_types": "track,episode"}
        if market:
            params["market"] = market
        response = await self._api("GET", "/me/player/currently-playing", access_token, params)
        # 204: nothing playing, no device or a private session. A 404 "non existing id" has been
        # seen for "no active device": the same answer.
        if response.status_code in (202, 204, 404) or not response.content.strip():
            return NowPlaying(is_playing=False, timestamp=self._clock.now())
        return parse_currently_playing(_json_object(response), now=self._clock.now())

    async def recently_played(self, access_token: str, *, limit: int = 1) -> list[PlayedItem]:
        """The last ``limit`` (1-50) tracks played, newest first."""
        if not 1 <= limit <= 50:
            raise ValueError("limit must be between 1 and 50")
        response = await self._api(
            "GET", "/me/player/recently-played", access_token, {"limit": str(limit)}
        )
        return parse_recently_played(_json_object(response))

    async def me(self, access_token: str) -> Profile:
        """The user who granted the token."""
        response = await self._api("GET", "/me", access_token, None)
        body = _json_object(response)
        uid = body.get("id")
        if not isinstance(uid, str) or not uid:
            raise BadResponse("profile without id", response=response)
        return Profile(
            id=uid,
            display_name=str(body.get("display_name") or uid),
            url=_spotify_url(body.get("external_urls")),
        )

    async def _api(
        self, method: str, path: str, access_token: str, params: Mapping[str, str] | None
    ) -> httpx.Response:
        response = await self._send(
            method,
            f"{self.api_url}{path}",
            params=params,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
        status = response.status_code
        if status < 300 or status == 404:
            return response
        if status == 401:
            raise AccessTokenRejected(_api_message(response), response=response)
        if status == 403:
            raise classify_forbidden(_api_message(response), response=response)
        _raise_for_common(response)
        raise BadResponse(f"unexpected status {status}", response=response)

    async def _send(
        self,
        method: str,
        url: str,
        *,
        phases: httpx.Timeout | None = None,
        deadline: float | None = None,
        budget_wait: float | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request under a per-phase timeout and an overall deadline.

        The edge of the error tree: whatever ``httpx`` raises while sending or reading leaves as
        a :class:`SpotifyError`.
        """
        limit = deadline or self._deadline
        started = await self._spend(budget_wait)
        try:
            async with self._clock.timeout(limit):
                response = await self._http.request(
                    method, url, timeout=phases or self._timeout, **kwargs
                )
        except TimeoutError as e:
            raise SpotifyUnavailable(f"no answer within {limit:g}s") from e
        except httpx.TimeoutException as e:
            raise SpotifyUnavailable(f"timed out: {type(e).__name__}") from e
        except httpx.TransportError as e:
            raise SpotifyUnavailable(f"transport error: {type(e).__name__}") from e
        except httpx.DecodingError as e:
            raise SpotifyUnavailable(f"undecodable body: {type(e).__name__}") from e
        except httpx.TooManyRedirects as e:
            raise BadResponse("redirect loop: too many redirects") from e
        # Not HTTPError subclasses in httpx, but raised by it while sending or reading too.
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as e:
            raise SpotifyUnavailable(f"request failed: {type(e).__name__}") from e
        if self.budget is not None and response.status_code == 429:
            error = _error_object(response)
            quota = error is not None and error.get("reason") == QUOTA_EXCEEDED
            await self.budget.refused(started, _retry_after(response), quota=quota)
        return response

    async def _spend(self, max_wait: float | None) -> float:
        """Spend one call from the budget (waiting for room); over it, a :class:`RateLimited`."""
        if self.budget is None:
            return self._clock.now()
        try:
            return await self.budget.spend(max_wait)
        except OverBudget as e:
            raise RateLimited(e.retry_after, "budget") from e


# -- parsing ----------------------------------------------------------------------------------


def parse_currently_playing(body: Mapping[str, Any], *, now: float) -> NowPlaying:
    """Read a currently-playing (or playback-state) payload; tolerant of missing optional fields."""
    kind_raw = body.get("currently_playing_type") or "unknown"
    try:
        kind = Kind(kind_raw)
    except ValueError:
        kind = Kind.UNKNOWN
    raw_item = body.get("item")
    item = parse_item(raw_item) if isinstance(raw_item, Mapping) else None
    if item is not None:
        kind = item.kind
    progress = body.get("progress_ms")
    return NowPlaying(
        is_playing=bool(body.get("is_playing")),
        kind=kind if (item is not None or kind == Kind.AD) else None,
        item=item,
        progress_ms=_int(progress) if _is_number(progress) else None,
        # Spotify's `timestamp` is when playback last changed state, not when `progress_ms` was
        # measured; progress is as of the answer, so the answer's time is the reference.
        timestamp=now,
    )


def parse_item(raw: Mapping[str, Any]) -> Item:
    """A TrackObject or EpisodeObject as an :class:`Item`."""
    if raw.get("type") == "episode" or "show" in raw:
        show = _mapping(raw.get("show"))
        show_name = str(show.get("name") or "")
        return Item(
            kind=Kind.EPISODE,
            title=str(raw.get("name") or ""),
            artists=(show_name,) if show_name else (),
            album=show_name or None,
            image_url=_widest(raw.get("images")) or _widest(show.get("images")),
            url=_spotify_url(raw.get("external_urls")),
            duration_ms=_int(raw.get("duration_ms")),
            id=_opt_str(raw.get("id")),
            uri=_opt_str(raw.get("uri")),
            explicit=bool(raw.get("explicit")),
        )
    album = _mapping(raw.get("album"))
    artists = raw.get("artists")
    names = (
        tuple(str(a["name"]) for a in artists if isinstance(a, Mapping) and a.get("name"))
        if isinstance(artists, list)
        else ()
    )
    return Item(
        kind=Kind.TRACK,
        title=str(raw.get("name") or ""),
        artists=names,
        album=_opt_str(album.get("name")),
        image_url=_widest(album.get("images")),
        url=_spotify_url(raw.get("external_urls")),
        duration_ms=_int(raw.get("duration_ms")),
        id=_opt_str(raw.get("id")),
        uri=_opt_str(raw.get("uri")),
        explicit=bool(raw.get("explicit")),
        is_local=bool(raw.get("is_local")),
    )


def parse_recently_played(body: Mapping[str, Any]) -> list[PlayedItem]:
    """Items of a recently-played page, newest first as Spotify sends them."""
    items = body.get("items")
    if not isinstance(items, list):
        raise BadResponse("recently-played without items")
    out = []
    for entry in items:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("track"), Mapping):
            continue
        try:
            played = datetime.fromisoformat(str(entry["played_at"]).replace("Z", "+00:00"))
            at = played.timestamp()
        except (KeyError, ValueError, OverflowError, OSError):
            continue
        out.append(PlayedItem(item=parse_item(entry["track"]), played_at=at))
    return out


def _widest(images: object) -> str | None:
    if not isinstance(images, list):
        return None
    best: tuple[int, str] | None = None
    for img in images:
        if isinstance(img, Mapping) and isinstance(img.get("url"), str):
            width = _int(img.get("width"))
            if best is None or width > best[0]:
                best = (width, img["url"])
    return best[1] if best else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _spotify_url(external_urls: object) -> str | None:
    if isinstance(external_urls, Mapping):
        url = external_urls.get("spotify")
        if isinstance(url, str) and url:
            return url
    return None


def _opt_str(value: object) -> str | None:
    return str(value) if value is not None else None


def _is_number(value: object) -> bool:
    """A JSON number that is an integer or a finite float (Python's json reads NaN, Infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return int(value)


class _NotJSON(ValueError):
    """A body that is not JSON at all (or nested beyond what the parser takes)."""


def _json(response: httpx.Response) -> object:
    try:
        body: object = response.json()
    except (ValueError, RecursionError) as e:
        raise _NotJSON(str(e)) from e
    return body


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = _json(response)
    except _NotJSON as e:
        raise BadResponse(f"not JSON (status {response.status_code})", response=response) from e
    if not isinstance(body, dict):
        raise BadResponse("JSON is not an object", response=response)
    return body


def _error_object(response: httpx.Response) -> dict[str, Any] | None:
    """The Web API's ``{"error": {...}}`` object, when the body is one."""
    try:
        body = _json(response)
    except _NotJSON:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error: dict[str, Any] = body["error"]
        return error
    return None


def _api_message(response: httpx.Response) -> str:
    """Spotify's error message: JSON ``error.message``, or the plain-text body (dev-mode 403s)."""
    try:
        body = _json(response)
    except _NotJSON:
        return response.text.strip()[:200] or f"HTTP {response.status_code}"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message") or f"HTTP {response.status_code}")
    return f"HTTP {response.status_code}"


def _raise_for_common(response: httpx.Response) -> None:
    status = response.status_code
    if status == 429:
        error = _error_object(response)
        reason = error.get("reason") if error is not None else None
        raise RateLimited(
            _retry_after(response),
            reason if isinstance(reason, str) and reason else None,
            response=response,
        )
    if status >= 500:
        raise SpotifyUnavailable(f"Spotify answered {status}", response=response)


def _retry_after(response: httpx.Response) -> float:
    """Retry-After in seconds: 1 when missing or unreadable, at most :data:`MAX_RETRY_AFTER`."""
    raw = response.headers.get("Retry-After", "")
    try:
        seconds = float(raw)
    except ValueError:
        return 1.0
    if math.isnan(seconds):
        return 1.0
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def _raise_for_token_error(response: httpx.Response) -> None:
    _raise_for_common(response)
    try:
        body = _json(response)
    except _NotJSON as e:
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
