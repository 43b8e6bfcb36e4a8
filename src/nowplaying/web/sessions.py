"""Browser sessions: an opaque signed id in an HttpOnly cookie, the state on the server.

The store keeps only a fingerprint of the id, so a copy of the database opens no session. A
cookie signed with one of ``NOWPLAYING_OLD_SECRET_KEYS`` still verifies, so a key rotation that
lists the previous key logs nobody out.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from nowplaying.clock import Clock
from nowplaying.crypto import Signer, fingerprint
from nowplaying.store import AccountStatus, Session, Store

LOGIN_TTL = 600.0
TOUCH_EVERY = 60.0
CACHE_SECONDS = 2.0
CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class CookieNames:
    session: str
    login: str


class Sessions:
    """Issues, reads and ends sessions and pre-login browser bindings."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        secret: str,
        old_secrets: Sequence[str] = (),
        secure_prefix: bool,
        idle_seconds: float,
        max_seconds: float,
    ) -> None:
        self._store = store
        self._clock = clock
        self._signer = Signer(secret, "session-cookie", old_secrets)
        prefix = "__Host-" if secure_prefix else ""
        self.names = CookieNames(session=f"{prefix}np_session", login=f"{prefix}np_login")
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds
        # Widgets ask every few seconds: remember a verified answer briefly, under the request's
        # Cookie header as sent, so the hot path neither parses cookies nor reads the database.
        # Ending a session here forgets it at once; elsewhere (another instance) within
        # CACHE_SECONDS. Each entry: (expires, account id, status, the session cookie).
        self._cache: dict[bytes, tuple[float, str, AccountStatus, str]] = {}

    # -- the session -----------------------------------------------------------------------------

    async def current(self, request: Request) -> Session | None:
        """The request's live session, or None (no cookie, bad signature, expired, unknown)."""
        key = self._key(request.cookies.get(self.names.session))
        if key is None:
            return None
        session = await self._store.get_session(key)
        if session is None:
            return None
        now = self._clock.now()
        if (
            now - session.last_seen > self.idle_seconds
            or now - session.created_at > self.max_seconds
        ):
            await self._store.delete_session(key)
            return None
        if now - session.last_seen > TOUCH_EVERY:
            await self._store.touch_session(key, now)
        return session

    async def account(self, request: Request) -> tuple[str, AccountStatus] | None:
        """The session's account id and status, or None: the per-request hot path."""
        header = _cookie_header(request.scope["headers"])
        if header is None:
            return None
        now = self._clock.now()
        hit = self._cache.get(header)
        if hit is not None and now < hit[0]:
            return hit[1], hit[2]
        cookie = request.cookies.get(self.names.session)
        if not cookie:
            return None
        session = await self.current(request)
        account = await self._store.get_account_info(session.account_id) if session else None
        if account is None:
            self._cache.pop(header, None)
            return None
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[header] = (now + CACHE_SECONDS, account.id, account.status, cookie)
        return account.id, account.status

    def held(self, request: Request) -> Callable[[], bool] | None:
        """Whether the memo entry :meth:`account` answered ``request`` from still stands, as a
        check to call later (the fast path's); None when there is none."""
        header = _cookie_header(request.scope["headers"])
        entry = self._cache.get(header) if header is not None else None
        if entry is None:
            return None
        cache, clock = self._cache, self._clock
        return lambda: cache.get(header) is entry and clock.now() < entry[0]  # type: ignore[arg-type]

    def forget_account(self, account_id: str) -> None:
        """Drop cached lookups for an account (logout, reconnect, status change)."""
        self._forget(lambda entry: entry[1] == account_id)

    def _forget(self, which: Callable[[tuple[float, str, AccountStatus, str]], bool]) -> None:
        for header in [h for h, entry in self._cache.items() if which(entry)]:
            del self._cache[header]

    async def start(self, request: Request, response: Response, account_id: str) -> None:
        """A new session for ``account_id`` with a new id (any old one is ended: no fixation)."""
        old = self._key(request.cookies.get(self.names.session))
        if old is not None:
            await self._store.delete_session(old)
        sid = secrets.token_urlsafe(32)
        now = self._clock.now()
        await self._store.put_session(Session(fingerprint(sid), account_id, now, now))
        self._set(response, self.names.session, self._signer.sign(sid), int(self.max_seconds))

    async def end(self, request: Request, response: Response) -> None:
        cookie = request.cookies.get(self.names.session)
        if cookie:
            self._forget(lambda entry: entry[3] == cookie)
        key = self._key(cookie)
        if key is not None:
            await self._store.delete_session(key)
        response.delete_cookie(self.names.session, path="/", secure=True, httponly=True)

    # -- the pre-login binding ---------------------------------------------------------------------

    def bind_browser(self, response: Response) -> str:
        """Give the browser a fresh login cookie; returns the fingerprint stored with the state."""
        nonce = secrets.token_urlsafe(32)
        self._set(response, self.names.login, self._signer.sign(nonce), int(LOGIN_TTL))
        return fingerprint(nonce)

    def browser(self, request: Request) -> str | None:
        """The fingerprint of this browser's login cookie, if it has a valid one."""
        return self._key(request.cookies.get(self.names.login))

    def clear_login(self, response: Response) -> None:
        response.delete_cookie(self.names.login, path="/", secure=True, httponly=True)

    # -- helpers -----------------------------------------------------------------------------------

    def _key(self, cookie: str | None) -> str | None:
        if not cookie or len(cookie) > 200:
            return None
        value = self._signer.unsign(cookie)
        return fingerprint(value) if value else None

    @staticmethod
    def _set(response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax"
        )


def _cookie_header(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """A request's ``Cookie`` header as sent (the first, as Starlette reads cookies), if any."""
    for name, value in headers:
        if name == b"cookie":
            return value
    return None
