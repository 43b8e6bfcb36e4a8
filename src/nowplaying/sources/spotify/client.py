"""The Spotify client: the token endpoint and the few Web API calls a widget needs.

It holds no state (tokens are handed in and back) and raises only the tree of :mod:`.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr

from nowplaying.clock import Clock, SystemClock
from nowplaying.models import NowPlaying, PlayedItem, Profile, Token
from nowplaying.sources.budget import CallBudget, OverBudget
from nowplaying.sources.spotify import oauth
from nowplaying.sources.spotify.errors import (
    AccessTokenRejected,
    BadResponse,
    RateLimited,
    SpotifyUnavailable,
    classify_forbidden,
)
from nowplaying.sources.spotify.oauth import SCOPE_CURRENTLY_PLAYING
from nowplaying.sources.spotify.parsing import (
    api_message,
    json_object,
    parse_currently_playing,
    parse_profile,
    parse_recently_played,
    quota_refusal,
    raise_for_common,
    retry_after,
)

DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
DEFAULT_DEADLINE = 8.0
# Token calls get longer: giving up on a refresh that Spotify then completes *with rotation*
# loses the new refresh token (the old one is revoked by then), and with it the account.
TOKEN_TIMEOUT = httpx.Timeout(15.0, connect=3.0)
TOKEN_DEADLINE = 20.0
TOKEN_BUDGET_WAIT = 15.0
"""A token call waits at most this long for room in the call budget: with its deadline it stays
within the 40 s the cross-instance refresh lock lives (``coord.redis``), so a refresh never
outlives its lock."""


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
        """The URL to send the browser to for consent (authorization code with PKCE)."""
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
        started = self._clock.now()
        response = await self._send(
            "POST",
            f"{self.accounts_url}/api/token",
            data=dict(form),
            headers={
                "Authorization": oauth.basic_auth(self.client_id, self._secret.get_secret_value())
            },
            phases=self._token_timeout,
            deadline=self._token_deadline,
            budget_wait=TOKEN_BUDGET_WAIT,
        )
        return oauth.token_from(response, started=started, previous_refresh=previous_refresh)

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
        return parse_currently_playing(json_object(response), now=self._clock.now())

    async def recently_played(self, access_token: str, *, limit: int = 1) -> list[PlayedItem]:
        """The last ``limit`` (1-50) tracks played, newest first."""
        if not 1 <= limit <= 50:
            raise ValueError("limit must be between 1 and 50")
        response = await self._api(
            "GET", "/me/player/recently-played", access_token, {"limit": str(limit)}
        )
        return parse_recently_played(json_object(response))

    async def me(self, access_token: str) -> Profile:
        """The user who granted the token."""
        response = await self._api("GET", "/me", access_token, None)
        return parse_profile(json_object(response), response)

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
            raise AccessTokenRejected(api_message(response), response=response)
        if status == 403:
            raise classify_forbidden(api_message(response), response=response)
        raise_for_common(response)
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
            await self.budget.refused(started, retry_after(response), quota=quota_refusal(response))
        return response

    async def _spend(self, max_wait: float | None) -> float:
        """Spend one call from the budget (waiting for room); over it, a :class:`RateLimited`."""
        if self.budget is None:
            return self._clock.now()
        try:
            return await self.budget.spend(max_wait)
        except OverBudget as e:
            raise RateLimited(e.retry_after, "budget") from e
