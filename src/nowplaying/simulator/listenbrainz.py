"""A simulated ListenBrainz API (``api.listenbrainz.org``) as an ASGI app.

Written from ListenBrainz's documentation (``sources-contract.md``), never from the project's
client: playing-now is at most one listen, without a timestamp, kept for the submitted duration
or 10 minutes; the rate limit is a fixed window per caller (the token, else the address).
"""

from __future__ import annotations

import functools
import json
import math
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nowplaying.clock import Clock, SystemClock

PLAYING_NOW_MAX = 600.0
"""How long a playing-now without a duration is kept (the sample configuration's 10 minutes)."""
MAX_LISTEN_BYTES = 10_240
MAX_IMPORT = 1000


@dataclass
class LbUser:
    name: str
    token: str
    playing: dict[str, Any] | None = None
    """The track_metadata of the playing-now listen."""
    playing_until: float = 0.0
    listens: list[dict[str, Any]] = field(default_factory=list)
    """Submitted listens (``listened_at`` and ``track_metadata``), oldest first."""


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ListenBrainz:
    """A simulated ListenBrainz: users with tokens, playing-now, listens, rate limits."""

    def __init__(
        self, clock: Clock | None = None, *, limit: int = 30, window: float = 10.0
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.limit = limit
        """Calls per ``window`` seconds for one caller; past it, 429."""
        self.window = window
        self.users: dict[str, LbUser] = {}
        self.calls: Counter[str] = Counter()
        self.user_agents: Counter[str] = Counter()
        self._used: dict[str, tuple[float, int]] = {}
        self.add_user("demo", token="lb-demo-token")

    # -- verbs ---------------------------------------------------------------------------------

    def add_user(self, name: str, *, token: str | None = None) -> LbUser:
        self.users[name] = LbUser(name, token or secrets.token_hex(18))
        return self.users[name]

    def user_of(self, token: str) -> LbUser | None:
        return next((u for u in self.users.values() if u.token == token), None)

    def play(self, user: str, metadata: dict[str, Any]) -> None:
        """A playing_now submission: kept for its duration, else :data:`PLAYING_NOW_MAX`."""
        who = self.users[user]
        info = metadata.get("additional_info") or {}
        duration = info.get("duration") or (info.get("duration_ms") or 0) / 1000
        who.playing = metadata
        who.playing_until = self.clock.now() + (float(duration) or PLAYING_NOW_MAX)

    def listen(self, user: str, metadata: dict[str, Any], listened_at: int) -> None:
        self.users[user].listens.append({"listened_at": listened_at, "track_metadata": metadata})

    def playing_now(self, user: str) -> dict[str, Any] | None:
        who = self.users[user]
        if who.playing is not None and self.clock.now() >= who.playing_until:
            who.playing = None
        return who.playing

    # -- rate limits ---------------------------------------------------------------------------

    def admit(self, caller: str) -> dict[str, str]:
        """Count a call for ``caller``; its rate-limit headers, or ApiError(429)."""
        now = self.clock.now()
        start, used = self._used.get(caller, (now, 0))
        if now >= start + self.window:
            start, used = now, 0
        reset_in = max(0, math.ceil(start + self.window - now))
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Reset-In": str(reset_in),
            "X-RateLimit-Reset": str(int(start + self.window)),
        }
        if used >= self.limit:
            self.calls["rate_limited"] += 1
            headers["X-RateLimit-Remaining"] = "0"
            raise _Limited(headers)
        self._used[caller] = (start, used + 1)
        headers["X-RateLimit-Remaining"] = str(self.limit - used - 1)
        return headers

    @functools.cached_property
    def app(self) -> Starlette:
        return Starlette(routes=routes(self))


class _Limited(ApiError):
    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__(429, "Too many requests. Please try again later.")
        self.headers = headers


def _token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "token" else ""


def submit(lb: ListenBrainz, user: LbUser, body: bytes) -> None:
    """``POST /1/submit-listens``: validated as the documentation says, then kept."""
    try:
        data = json.loads(body)
    except ValueError as e:
        raise ApiError(400, "Cannot parse JSON document.") from e
    if not isinstance(data, dict) or not isinstance(data.get("payload"), list):
        raise ApiError(400, "Invalid JSON document submitted.")
    kind, payload = data.get("listen_type"), data["payload"]
    if kind not in {"playing_now", "single", "import"}:
        raise ApiError(400, "JSON document requires a valid listen_type key.")
    if not payload or (kind != "import" and len(payload) != 1) or len(payload) > MAX_IMPORT:
        raise ApiError(400, f"JSON document contains the wrong number of listens for {kind}.")
    for listen in payload:
        meta = listen.get("track_metadata") if isinstance(listen, dict) else None
        if not isinstance(meta, dict):
            raise ApiError(400, "JSON document does not contain track_metadata.")
        for key in ("artist_name", "track_name"):
            if not isinstance(meta.get(key), str) or not meta[key].strip():
                raise ApiError(400, f"JSON document does not contain required {key}.")
        if len(json.dumps(listen).encode()) > MAX_LISTEN_BYTES:
            raise ApiError(400, "JSON document is too large.")
        if kind == "playing_now":
            lb.play(user.name, meta)
        elif not isinstance(listen.get("listened_at"), int):
            raise ApiError(400, "JSON document must contain the key listened_at.")
        else:
            lb.listen(user.name, meta, listen["listened_at"])


def _answer(
    lb: ListenBrainz, request: Request, name: str, make: Callable[[], dict[str, Any]]
) -> Response:
    """Count the call, admit it past the rate limit (its headers on every answer), answer."""
    lb.calls[name] += 1
    lb.user_agents[request.headers.get("user-agent", "")] += 1
    caller = _token(request) or (request.client.host if request.client else "")
    try:
        headers = lb.admit(caller)
    except _Limited as e:
        return JSONResponse({"code": 429, "error": str(e)}, 429, headers=e.headers)
    try:
        return JSONResponse(make(), headers=headers)
    except ApiError as e:
        return JSONResponse({"code": e.status, "error": str(e)}, e.status, headers=headers)


def routes(lb: ListenBrainz) -> list[Route]:
    """The API at ``/1/...`` and the control API."""
    return [*_reads(lb), *_writes(lb)]


def _reads(lb: ListenBrainz) -> list[Route]:

    async def validate(request: Request) -> Response:
        token = _token(request) or request.query_params.get("token", "")

        def make() -> dict[str, Any]:
            if not token:
                raise ApiError(400, "You need to provide an Authorization token.")
            user = lb.user_of(token)
            if user is None:
                return {"code": 200, "message": "Token invalid.", "valid": False}
            return {"code": 200, "message": "Token valid.", "valid": True, "user_name": user.name}

        return _answer(lb, request, "validate-token", make)

    async def playing_now(request: Request) -> Response:
        name = request.path_params["user"]

        def make() -> dict[str, Any]:
            if name not in lb.users:
                raise ApiError(404, f"Cannot find user: {name}")
            meta = lb.playing_now(name)
            listens = [{"playing_now": True, "track_metadata": meta}] if meta else []
            return {
                "payload": {
                    "count": len(listens),
                    "user_id": name,
                    "playing_now": bool(listens),
                    "listens": listens,
                }
            }

        return _answer(lb, request, "playing-now", make)

    async def listens(request: Request) -> Response:
        name = request.path_params["user"]
        count = min(int(request.query_params.get("count", "25") or 25), 100)

        def make() -> dict[str, Any]:
            if name not in lb.users:
                raise ApiError(404, f"Cannot find user: {name}")
            found = list(reversed(lb.users[name].listens))[:count]
            return {"payload": {"count": len(found), "user_id": name, "listens": found}}

        return _answer(lb, request, "listens", make)

    return [
        Route("/1/validate-token", validate, methods=["GET"]),
        Route("/1/user/{user}/playing-now", playing_now, methods=["GET"]),
        Route("/1/user/{user}/listens", listens, methods=["GET"]),
    ]


def _writes(lb: ListenBrainz) -> list[Route]:
    async def submit_listens(request: Request) -> Response:
        body = await request.body()
        token = _token(request)

        def make() -> dict[str, Any]:
            if not token:
                raise ApiError(401, "You need to provide an Authorization header.")
            user = lb.user_of(token)
            if user is None:
                raise ApiError(401, "Invalid authorization token.")
            submit(lb, user, body)
            return {"status": "ok"}

        return _answer(lb, request, "submit-listens", make)

    async def control(request: Request) -> Response:
        """``POST /_control/listenbrainz/users/{user}``: make a user (``{"token": ...}``)."""
        body = await request.json()
        user = lb.add_user(request.path_params["user"], token=body.get("token"))
        return JSONResponse({"user_name": user.name, "token": user.token})

    async def calls(request: Request) -> Response:
        return JSONResponse(dict(lb.calls))

    return [
        Route("/1/submit-listens", submit_listens, methods=["POST"]),
        Route("/_control/listenbrainz/users/{user}", control, methods=["POST"]),
        Route("/_control/listenbrainz/calls", calls, methods=["GET"]),
    ]
