"""The :class:`World`: what the simulated Spotify knows (apps, users, playback, faults, limits).

The routes read and change it; :class:`~nowplaying.simulator.app.Simulator` adds the ASGI app.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable

from starlette.requests import Request

from nowplaying.clock import Clock, SystemClock
from nowplaying.simulator.accounts import Accounts, Client, Grant, RefreshMode, User
from nowplaying.simulator.faults import Faults
from nowplaying.simulator.limits import DEFAULT_DEVELOPER, Limits
from nowplaying.simulator.player import Player

DEFAULT_USER = "demo"
CALL_TIMES = 10_000


class World:
    """A simulated Spotify's state: apps, users, their playback, faults on demand."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        client_id: str = "cid",
        client_secret: str = "csecret",  # noqa: S107 - the simulator's well-known test secret
        redirect_uris: Iterable[str] = ("http://127.0.0.1:8000/callback",),
        client_name: str = "Now Playing",
        refresh_mode: RefreshMode = "omit",
        refresh_token_lifetime: float = 182 * 86400,
        public_url: str | None = None,
        control: bool = True,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.accounts = Accounts(
            self.clock, refresh_mode=refresh_mode, refresh_token_lifetime=refresh_token_lifetime
        )
        self.faults = Faults()
        self.limits = Limits(self.clock)
        """The rolling-window rate limit per app and the daily quota (both off until set)."""
        self.calls: Counter[str] = Counter()
        self.no_cover: set[str] = set()
        """Release MBIDs the simulated Cover Art Archive has no front cover for (a 404)."""
        self.call_times: deque[tuple[str, float]] = deque(maxlen=CALL_TIMES)
        """The last :data:`CALL_TIMES` per-user Web API calls: (``endpoint:user``, clock time),
        for a bench that tells the wait for a poll from the way to the viewer."""
        self.public_url = public_url.rstrip("/") if public_url else None
        self.client_id = client_id
        self.default_user = DEFAULT_USER
        self._players: dict[str, Player] = {}
        self.accounts.add_client(client_id, client_secret, redirect_uris, name=client_name)
        self.add_user(DEFAULT_USER, "Demo Listener")
        self.control = control
        """Whether the app serves the ``/_control`` API."""

    # -- setup -----------------------------------------------------------------------------

    def add_client(
        self,
        client_id: str,
        client_secret: str,
        redirect_uris: Iterable[str],
        *,
        name: str | None = None,
        owner_premium: bool = True,
        allowlist: Iterable[str] | None = None,
        developer: str = DEFAULT_DEVELOPER,
    ) -> Client:
        """Register another app; ``allowlist`` None lets every user in. Apps of one
        ``developer`` account share its daily quota."""
        self.limits.developers[client_id] = developer
        return self.accounts.add_client(
            client_id,
            client_secret,
            redirect_uris,
            name=name,
            owner_premium=owner_premium,
            allowlist=allowlist,
        )

    def add_user(self, user_id: str, display_name: str, *, product: str = "premium") -> User:
        """Create a user with a fresh player on the built-in playlist."""
        user = self.accounts.add_user(user_id, display_name, product=product)
        self._players[user_id] = Player(self.clock)
        return user

    def grant(
        self,
        user_id: str,
        scopes: Iterable[str] = ("user-read-currently-playing",),
        client_id: str | None = None,
    ) -> Grant:
        """Tokens as if ``user_id`` had agreed on the consent page (for the default app if None)."""
        return self.accounts.grant(user_id, scopes, client_id or self.client_id)

    def player(self, user_id: str) -> Player:
        """The user's playback timeline (KeyError for an unknown user)."""
        return self._players[user_id]

    # -- events ----------------------------------------------------------------------------

    def expire_access_tokens(self, user_id: str | None = None) -> None:
        """The user's (or everyone's) access tokens answer 401 from now on."""
        self.accounts.expire_access_tokens(user_id)

    def revoke(self, user_id: str) -> None:
        """The user removed the app: refresh gets "Refresh token revoked", the API 401."""
        self.accounts.revoke(user_id)

    def set_refresh_mode(self, mode: RefreshMode) -> None:
        """ "omit": refresh responses carry no refresh token; "rotate": a new one each time."""
        if mode not in ("omit", "rotate"):
            raise ValueError(f"unknown refresh mode {mode!r}")
        self.accounts.refresh_mode = mode

    def reset_calls(self) -> None:
        """Zero the call counters."""
        self.calls.clear()
        self.call_times.clear()

    # -- for the routes --------------------------------------------------------------------

    def base_url(self, request: Request) -> str:
        """The URL browsers reach the simulator at (``public_url``, else this request's base).

        The request's base includes the ``root_path`` of the mount the simulator sits under
        (Starlette's ``request.base_url`` would give the outermost app's root instead).
        """
        if self.public_url is not None:
            return self.public_url
        url = request.url
        return f"{url.scheme}://{url.netloc}{request.scope.get('root_path', '')}".rstrip("/")
