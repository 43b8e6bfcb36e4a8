"""A simulated Last.fm (``ws.audioscrobbler.com/2.0/`` and the web-auth page) as an ASGI app.

Written from Last.fm's documentation (``sources-contract.md`` has each fact and where it comes
from), never from the project's client; its quirks are kept on purpose: the now-playing item
first (so ``limit=1`` gives two), numbers as strings, ``mbid`` as ``""``, XML unless
``format=json``.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, urlencode
from xml.sax.saxutils import escape, quoteattr

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from nowplaying.clock import Clock, SystemClock
from nowplaying.simulator.covers import render_png
from nowplaying.simulator.oauth import read_form

PLACEHOLDER = "2a96cbd8b46e442fc41c2b86b821562f"
"""Last.fm's blank image: what every artist image has been since 2019, and a track without art."""
IMAGE_HOST = "https://lastfm.freetls.fastly.net/i/u"
_SIZES = (("small", "34s"), ("medium", "64s"), ("large", "174s"), ("extralarge", "300x300"))
_IMAGE_SIDES = {"34s": 34, "64s": 64, "174s": 174, "300x300": 300}
TOKEN_LIFETIME = 3600.0
"""A web-auth token is good for 60 minutes, once."""
UNSIGNED = {"format", "callback", "api_sig"}

ERRORS = {
    6: (404, "User not found"),
    10: (403, "Invalid API key - You must be granted a valid key by last.fm"),
    13: (403, "Invalid method signature supplied"),
    14: (403, "Unauthorized Token - This token has not been authorized"),
    15: (403, "This token has expired"),
    17: (403, "Login: User required to be logged in"),
    26: (403, "Suspended API key - Access for your account has been suspended"),
    29: (429, "Rate Limit Exceded - Your IP has made too many requests in a short period"),
    3: (400, "Invalid Method - No method with that name in this package"),
}


class LastFmError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(ERRORS[code][1])
        self.code = code


@dataclass(frozen=True, slots=True)
class Scrobble:
    """A track as Last.fm keeps it: names, MusicBrainz ids (often none), the art's file id."""

    artist: str
    name: str
    album: str = ""
    mbid: str = ""
    album_mbid: str = ""
    image: str | None = None
    """The art's file id on the image host; None shows the blank placeholder."""
    duration: float = 0.0
    """Seconds, as the scrobbler reported them (0: unknown, now playing then lasts 10 min)."""

    @property
    def url(self) -> str:
        return f"https://www.last.fm/music/{quote_plus(self.artist)}/_/{quote_plus(self.name)}"


@dataclass
class LastFmUser:
    name: str
    private: bool = False
    """'Hide recent listening information': getRecentTracks answers error 17."""
    playing: Scrobble | None = None
    playing_until: float = 0.0
    scrobbles: list[tuple[Scrobble, int]] = field(default_factory=list)
    """(track, UTC seconds), oldest first."""


@dataclass
class _Token:
    api_key: str
    issued_at: float
    user: str | None = None


class LastFm:
    """A simulated Last.fm: API keys, users, their scrobbles and now playing, web auth."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        api_key: str = "lfkey",
        api_secret: str = "lfsecret",  # noqa: S107 - the simulator's well-known test secret
        calls_per_second: int | None = None,
        image_host: str = IMAGE_HOST,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.keys: dict[str, str] = {api_key: api_secret}
        self.suspended: set[str] = set()
        self.calls_per_second = calls_per_second
        """Past this many calls in a second for one key: error 29 (None: no limit)."""
        self.users: dict[str, LastFmUser] = {}
        self.sessions: dict[str, str] = {}
        self.calls: Counter[str] = Counter()
        self.image_host = image_host.rstrip("/")
        """Where the images' URLs point: Last.fm's CDN, or this app's ``/i/u`` (served here)."""
        self._tokens: dict[str, _Token] = {}
        self._recent: dict[str, deque[float]] = {}
        self.add_user("demo")

    # -- verbs (tests and the control API) ---------------------------------------------------

    def add_user(self, name: str, *, private: bool = False) -> LastFmUser:
        self.users[name] = LastFmUser(name, private=private)
        return self.users[name]

    def play(self, user: str, track: Scrobble) -> None:
        """``user``'s scrobbler says ``track`` plays now: shown until its duration has passed
        (10 minutes when unknown) or the next scrobble."""
        who = self.users[user]
        who.playing = track
        who.playing_until = self.clock.now() + (track.duration or 600.0)

    def scrobble(self, user: str, track: Scrobble, at: float | None = None) -> None:
        """A finished listen; it ends the now playing."""
        who = self.users[user]
        who.scrobbles.append((track, int(self.clock.now() if at is None else at)))
        who.playing = None

    def authorize(self, token: str, user: str) -> None:
        """What the user does on the web-auth page: allow the app this token names."""
        self._tokens[token].user = user

    def issue_token(self, api_key: str) -> str:
        token = secrets.token_hex(16)
        self._tokens[token] = _Token(api_key, self.clock.now())
        return token

    def now_playing(self, user: str) -> Scrobble | None:
        who = self.users[user]
        if who.playing is not None and self.clock.now() >= who.playing_until:
            who.playing = None
        return who.playing

    # -- the API -------------------------------------------------------------------------------

    def call(self, params: dict[str, str]) -> dict[str, Any]:
        """One API call: the answer's body (JSON's shape), or LastFmError."""
        method = params.get("method", "").lower()
        self.calls[method] += 1
        key = params.get("api_key", "")
        if key not in self.keys:
            raise LastFmError(10)
        if key in self.suspended:
            raise LastFmError(26)
        self._count(key)
        if method == "auth.gettoken":
            # Signed like every auth method (authspec); a wrong signature is error 13.
            if "api_sig" in params and params["api_sig"] != signature(params, self.keys[key]):
                raise LastFmError(13)
            return {"token": self.issue_token(key)}
        if method == "auth.getsession":
            return self._session(params, key)
        if method == "user.getrecenttracks":
            return self._recent_tracks(params)
        raise LastFmError(3)

    def _count(self, key: str) -> None:
        if self.calls_per_second is None:
            return
        now = self.clock.now()
        recent = self._recent.setdefault(key, deque())
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        if len(recent) >= self.calls_per_second:
            self.calls["rate_limited"] += 1
            raise LastFmError(29)
        recent.append(now)

    def _session(self, params: dict[str, str], key: str) -> dict[str, Any]:
        if params.get("api_sig", "") != signature(params, self.keys[key]):
            raise LastFmError(13)
        token = self._tokens.get(params.get("token", ""))
        if token is None or self.clock.now() > token.issued_at + TOKEN_LIFETIME:
            raise LastFmError(15)
        if token.user is None or token.api_key != key:
            raise LastFmError(14)
        del self._tokens[params["token"]]  # exchanged once
        session = secrets.token_hex(16)
        self.sessions[session] = token.user
        return {"session": {"name": token.user, "key": session, "subscriber": 0}}

    def _recent_tracks(self, params: dict[str, str]) -> dict[str, Any]:
        who = self.users.get(params.get("user", ""))
        if who is None:
            raise LastFmError(6)
        if who.private:
            raise LastFmError(17)
        limit = max(1, min(int(params.get("limit", "50") or 50), 200))
        tracks = [_item(t, self.image_host, date=at) for t, at in reversed(who.scrobbles[-limit:])]
        playing = self.now_playing(who.name)
        if playing is not None:
            tracks.insert(0, _item(playing, self.image_host, date=None))
        total = len(who.scrobbles)
        attr = {
            "user": who.name,
            "page": "1",
            "perPage": str(limit),
            "totalPages": str(max(1, -(-total // limit))),
            "total": str(total),
        }
        return {"recenttracks": {"track": tracks, "@attr": attr}}

    @functools.cached_property
    def app(self) -> Starlette:
        return Starlette(routes=routes(self))


def signature(params: dict[str, str], secret: str) -> str:
    """``api_sig``: md5 of every parameter's name and value, by name, but ``format`` and
    ``callback``, then the shared secret (last.fm/api/authspec section 8)."""
    text = "".join(f"{k}{params[k]}" for k in sorted(params) if k not in UNSIGNED)
    return hashlib.md5((text + secret).encode()).hexdigest()  # noqa: S324 - Last.fm's scheme


def _item(track: Scrobble, image_host: str, *, date: int | None) -> dict[str, Any]:
    image = track.image or PLACEHOLDER
    ext = "png" if image == PLACEHOLDER else "jpg"
    item: dict[str, Any] = {
        "artist": {"mbid": "", "#text": track.artist},
        "streamable": "0",
        "image": [{"size": s, "#text": f"{image_host}/{d}/{image}.{ext}"} for s, d in _SIZES],
        "mbid": track.mbid,
        "album": {"mbid": track.album_mbid, "#text": track.album},
        "name": track.name,
        "url": track.url,
    }
    if date is None:
        item["@attr"] = {"nowplaying": "true"}
    else:
        when = datetime.fromtimestamp(date, UTC).strftime("%d %b %Y, %H:%M")
        item["date"] = {"uts": str(date), "#text": when}
    return item


# -- the wire ----------------------------------------------------------------------------------


def to_xml(body: dict[str, Any]) -> str:
    """A JSON-shaped answer as Last.fm's XML: ``@attr`` become attributes, ``#text`` text."""
    inner = "".join(_element(k, v) for k, v in body.items())
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<lfm status="ok">{inner}</lfm>\n'


def _element(name: str, value: Any) -> str:
    if isinstance(value, list):
        return "".join(_element(name, v) for v in value)
    if not isinstance(value, dict):
        return f"<{name}>{escape(str(value))}</{name}>"
    text = value.get("#text")
    attrs = dict(value.get("@attr", {}))
    if text is not None:  # {"mbid": "", "#text": "A"} is <artist mbid="">A</artist>
        attrs.update({k: v for k, v in value.items() if k not in {"#text", "@attr"}})
    shown = "".join(f" {k}={quoteattr(str(v))}" for k, v in attrs.items())
    if text is not None:
        return f"<{name}{shown}>{escape(str(text))}</{name}>"
    children = "".join(_element(k, v) for k, v in value.items() if k != "@attr")
    return f"<{name}{shown}>{children}</{name}>"


def _answer(body: dict[str, Any], params: dict[str, str]) -> Response:
    if params.get("format") == "json":
        return JSONResponse(body)
    return Response(to_xml(body), media_type="text/xml")


def _error(error: LastFmError, params: dict[str, str]) -> Response:
    status, message = ERRORS[error.code]
    if params.get("format") == "json":
        return JSONResponse({"error": error.code, "message": message}, status)
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<lfm status="failed">'
        f'<error code="{error.code}">{escape(message)}</error></lfm>\n'
    )
    return Response(xml, status, media_type="text/xml")


def routes(fm: LastFm) -> list[Route]:
    """The API at ``/2.0/``, the web-auth page at ``/api/auth/``, the control API, and the
    image host at ``/i/u/`` (for a :attr:`LastFm.image_host` pointing here)."""

    async def api(request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            params.update(await read_form(request))
        try:
            return _answer(fm.call(params), params)
        except LastFmError as e:
            return _error(e, params)

    async def auth_page(request: Request) -> Response:
        """GET: the consent page; POST (its form): allow, then back to ``cb`` with the token."""
        q = dict(request.query_params)
        if request.method == "GET":
            form = "".join(
                f"<input type=hidden name={quoteattr(k)} value={quoteattr(v)}>"
                for k, v in q.items()
            )
            return HTMLResponse(
                "<!doctype html><title>Last.fm</title><form method=post>"
                f"{form}<input name=user value=demo><button>Yes, allow access</button></form>"
            )
        q.update(await read_form(request))
        if q.get("api_key") not in fm.keys or q.get("user") not in fm.users:
            return HTMLResponse("Invalid API key or user", 400)
        if q.get("token"):  # the desktop flow: a token fetched with auth.getToken
            fm.authorize(q["token"], q["user"])
            return HTMLResponse("Access granted; you may close this window.")
        token = fm.issue_token(q["api_key"])
        fm.authorize(token, q["user"])
        cb = q.get("cb", "")
        return RedirectResponse(
            f"{cb}{'&' if '?' in cb else '?'}{urlencode({'token': token})}", 302
        )

    async def control(request: Request) -> Response:
        user = request.path_params["user"]
        action = request.path_params["action"]
        body = await request.json() if await request.body() else {}
        if user not in fm.users:
            fm.add_user(user)
        if action == "private":
            fm.users[user].private = bool(body.get("private", True)) if body else True
        elif action in {"play", "scrobble"}:
            fields = {k: body[k] for k in Scrobble.__dataclass_fields__ if k in body}
            track = Scrobble(**fields)
            fm.play(user, track) if action == "play" else fm.scrobble(user, track)
        else:
            return JSONResponse({"error": f"unknown action {action!r}"}, 400)
        return JSONResponse({"ok": True})

    async def calls(request: Request) -> Response:
        return JSONResponse(dict(fm.calls))

    async def image(request: Request) -> Response:
        """The image host: art drawn from its id (the placeholder a blank 1x1 PNG), typed as
        PNG whatever the extension, as the fetcher trusts the bytes."""
        fm.calls["image"] += 1
        name, _, ext = request.path_params["file"].partition(".")
        side = _IMAGE_SIDES.get(request.path_params["size"])
        if side is None or ext not in {"png", "jpg"} or not name.isalnum() or len(name) > 64:
            return Response(status_code=404)
        art = render_png("blank", 1, 1) if name == PLACEHOLDER else render_png(name, side, side)
        return Response(art, media_type="image/png")

    return [
        Route("/2.0/", api, methods=["GET", "POST"]),
        Route("/api/auth/", auth_page, methods=["GET", "POST"]),
        Route("/_control/lastfm/users/{user}/{action}", control, methods=["POST"]),
        Route("/_control/lastfm/calls", calls, methods=["GET"]),
        Route("/i/u/{size}/{file}", image, methods=["GET"]),
    ]
