"""Public share links: ``/p/{id}`` as JSON, SVG, PNG and events, ``/social.png``, ``/open``,
``/colours`` (the cover theme's colours, or another theme's with the cover's accent, for the live
widget).

No cookie is involved: the unguessable public id is the capability, and the owner can rotate or
withdraw it. A card always answers 200 with an image (image proxies show nothing for errors),
within about two seconds however slow the upstream or the image host. A grant sealed with a key
no longer configured answers exactly as one that needs reconnecting.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from typing import Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from nowplaying.cards import png
from nowplaying.cards.cache import CARD_STEP, CardKey, Format, RenderedCard, card_clock
from nowplaying.cards.card import card_etag, render_bad_option, render_card
from nowplaying.cards.colours import accented, cover_colours, painted
from nowplaying.cards.options import DEFAULT, BadOption, CardOptions, Hide, card_options, theme_of
from nowplaying.cards.themes import THEMES, Theme
from nowplaying.engine.snapshot import view_of
from nowplaying.schema import Error, ErrorCode, Nothing, Playing, State, error
from nowplaying.store import Account, AccountStatus, StoreError
from nowplaying.web import pages
from nowplaying.web.api import BareEndpoint
from nowplaying.web.errors import BadRequest, NotFound, json_response, raw_headers
from nowplaying.web.fast import REUSE_SECONDS, hold
from nowplaying.web.state import Services, services

OPEN_PREFIXES = (
    "https://open.spotify.com/",
    "https://www.last.fm/",
    "https://listenbrainz.org/",
    "https://musicbrainz.org/",
)
"""Where ``/p/{id}/open`` may lead: each source's own site. A pushed track carries no URL (a
push could name any), so it opens nothing."""
CORS = {"Access-Control-Allow-Origin": "*"}
NO_CACHE = {"Cache-Control": "no-cache, max-age=0"}
EDGE_CACHE = {"Cache-Control": "public, max-age=0, s-maxage=1, stale-while-revalidate=5"}
"""The public JSON and SVG: a CDN or caching proxy may answer from a copy up to a second old (and
a few seconds more while it fetches a new one), so a popular widget costs the origin about one
request per second per URL; browsers and image proxies revalidate every time (ETag, 304)."""
PUBLIC_JSON_RAW = raw_headers({**CORS, **EDGE_CACHE})
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
SVG_TYPE = "image/svg+xml; charset=utf-8"
SVG_HEADERS = {**EDGE_CACHE, "Content-Security-Policy": SVG_CSP, **CORS}
PNG_HEADERS = {**EDGE_CACHE, **CORS}
SVG_BUDGET = 1.8  # seconds for state and cover together; the card must answer within 2 s


async def state_of(
    svc: Services, account: Account, wait: float | None = None, now: float | None = None
) -> State:
    """The account's public state as of ``now`` (default: the clock's now): like
    ``/api/spotify``'s (:func:`~nowplaying.engine.snapshot.view_of`), but every state is data,
    never a 401."""
    if account.status is AccountStatus.RECONNECT_REQUIRED:
        return error(ErrorCode.RECONNECT_REQUIRED)
    if wait is None:  # the hub's own first wait bounds it; no timer to arm
        snap = await svc.runtime.hub.current(account.id)
    else:
        snap = None
        with contextlib.suppress(TimeoutError):
            async with svc.runtime.clock.timeout(wait):
                snap = await svc.runtime.hub.current(account.id)
    if snap is None:
        snap = svc.runtime.hub.peek(account.id)
    return view_of(snap, svc.runtime.clock.now() if now is None else now)


async def as_json(request: Request) -> Response:
    svc = services(request)
    public_id = request.path_params["public_id"]
    account = await svc.published.get(public_id)
    if account is None:
        raise NotFound
    state = await state_of(svc, account)
    if not (isinstance(state, Error) and state.error is ErrorCode.UNAVAILABLE):
        still = _standing(svc, public_id, account)
        if still is not None:
            hold(request.scope, svc.runtime.clock.now() + REUSE_SECONDS, still)
        return json_response(state, headers=PUBLIC_JSON_RAW)
    pause = svc.runtime.hub.pause  # Spotify's own Retry-After, when the app is paused
    wait = pause.until - svc.runtime.clock.now() if pause else svc.runtime.hub.poll_seconds
    headers = {**CORS, **NO_CACHE, "Retry-After": str(max(1, round(wait)))}
    return json_response(state, 503, headers=headers)


async def as_svg(request: Request) -> Response:
    """The card: always an image (a bad option is a 400 whose body is the card naming it),
    revalidated by ETag."""
    return await _image(request, Format.SVG)


async def as_png(request: Request) -> Response:
    """The card as a PNG (twice its size), for the places that show no SVG; as the SVG."""
    return await _image(request, Format.PNG)


async def as_social(request: Request) -> Response:
    """The card on a 1200x630 PNG, the link preview's ``og:image``; as the SVG."""
    return await _image(request, Format.SOCIAL)


async def _image(request: Request, fmt: Format) -> Response:
    svc = services(request)
    try:
        options = card_options(request.query_params, CardOptions)
    except BadOption as e:
        return await bad_option_image(request, e, fmt)
    deadline = svc.runtime.clock.now() + SVG_BUDGET
    drawn_at = card_clock(svc.runtime.clock.now())
    cover = None
    state: State = error(ErrorCode.NOT_FOUND)
    public_id = request.path_params["public_id"]
    still = None
    try:
        account = await svc.published.get(public_id)
    except StoreError:  # the card is an image whatever happens (a CryptoError: app.py)
        account, state = None, error(ErrorCode.UNAVAILABLE)
    if account is not None:
        state = await state_of(svc, account, wait=SVG_BUDGET * 0.6, now=drawn_at)
        still = _standing(svc, public_id, account) if fmt is Format.SVG else None
        image = None if Hide.COVER in options.hide else _link(state, "album_image_url")
        if image:
            with contextlib.suppress(TimeoutError):
                async with svc.runtime.clock.timeout(deadline - svc.runtime.clock.now()):
                    cover = await svc.covers.data_uri(image)
            if cover is None:
                still = None  # the next request tries the cover again
    response = await _card(request, CardKey(state, options, cover, drawn_at), fmt)
    if still is not None:
        hold(request.scope, drawn_at + CARD_STEP, still)
    return response


def _standing(svc: Services, public_id: str, account: Account) -> Callable[[], bool] | None:
    """A check that what ``account``'s answer was made from still stands: the link as this
    instance holds it and the engine's snapshot (each check keeps the poller going, as a request
    does); None when there is nothing to hold on to."""
    hub, published = svc.runtime.hub, svc.published
    snap = hub.peek(account.id)
    if snap is None or account.status is AccountStatus.RECONNECT_REQUIRED:
        return None
    return lambda: published.cached(public_id) is account and hub.touch(account.id) is snap


async def reconnect_card(request: Request) -> Response:
    """The "Reconnect needed" card, for a grant no configured key opens (app.py's handler)."""
    try:
        options = card_options(request.query_params, CardOptions)
    except BadOption:
        options = DEFAULT
    drawn_at = card_clock(services(request).runtime.clock.now())
    path = request.url.path
    fmt = Format.SOCIAL if path.endswith("/social.png") else Format(path.rsplit(".", 1)[-1])
    return await _card(
        request, CardKey(error(ErrorCode.RECONNECT_REQUIRED), options, None, drawn_at), fmt
    )


async def _card(request: Request, key: CardKey, fmt: Format) -> Response:
    """The card for ``key`` (its state as of the card clock's instant) in ``fmt``, rendered once
    per key (and rasterised once per SVG)."""
    return await _serve(request, services(request).cards.card(key, _draw), fmt)


def _draw(key: CardKey) -> str:
    return render_card(key.state, key.params, cover=key.cover, now=key.now)


async def drawn_image(request: Request, svg: str, fmt: Format) -> Response:
    """A card drawn for this request (not by the card cache's key) in ``fmt``."""
    body = svg.encode("utf-8")
    return await _serve(request, RenderedCard(body, card_etag(body)), fmt)


async def bad_option_image(request: Request, error: BadOption, fmt: Format) -> Response:
    """A 400 whose body is an image naming the bad parameter: the status for programs (and the
    OpenAPI document), the picture for the person who pasted the link (a browser draws an
    ``<img>`` whatever its status). Not revalidated: a 400 is not cached."""
    body = render_bad_option(error, theme_of(request.query_params)).encode("utf-8")
    if fmt is Format.SVG:
        return Response(body, 400, headers={**SVG_HEADERS, **NO_CACHE}, media_type=SVG_TYPE)
    image = await services(request).cards.image(RenderedCard(body, card_etag(body)), fmt, png.draw)
    return Response(image.body, 400, headers={**PNG_HEADERS, **NO_CACHE}, media_type="image/png")


async def _serve(request: Request, svg: RenderedCard, fmt: Format) -> Response:
    """``svg`` in ``fmt``, 200 or 304 by its ETag (a PNG is rasterised once, in a thread)."""
    if fmt is Format.SVG:
        return svg_response(request, svg.body, svg.etag)
    image = await services(request).cards.image(svg, fmt, png.draw)
    return revalidated(request, image.body, "image/png", {**PNG_HEADERS, "ETag": image.etag})


def svg_response(request: Request, svg: bytes | str, etag: str | None = None) -> Response:
    """An SVG image, 200 or 304 by its ETag, never cached without revalidating."""
    etag = etag or card_etag(svg if isinstance(svg, str) else svg.decode())
    return revalidated(request, svg, SVG_TYPE, {**SVG_HEADERS, "ETag": etag})


def revalidated(
    request: Request, body: bytes | str, media_type: str, headers: dict[str, str]
) -> Response:
    """``body`` with ``headers``, or a 304 (the same headers, no body) when the request's
    ``If-None-Match`` names its ``ETag`` (weak or strong)."""
    if headers["ETag"] in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def strong_etag(body: bytes) -> str:
    """A strong, quoted ETag for a body that only changes with the code (a script, a sheet)."""
    return '"' + hashlib.sha256(body).hexdigest()[:20] + '"'


async def _events(request: Request) -> Response:
    svc = services(request)
    account = await svc.published.get(request.path_params["public_id"])
    if account is None:
        raise NotFound
    headers = {**CORS, **NO_CACHE, "X-Accel-Buffering": "no"}
    if svc.grip is not None and svc.grip.forwarded(request.headers):
        return svc.grip.response(account.id, request.headers, headers, request.url.path)
    return svc.streams.response(
        account.id, last_event_id=request.headers.get("last-event-id"), headers=headers
    )


events = BareEndpoint(_events)


async def open_item(request: Request) -> Response:
    """Redirect to what plays (or last played) on its source's site (:data:`OPEN_PREFIXES`);
    nowhere else, ever."""
    svc = services(request)
    account = await svc.published.get(request.path_params["public_id"])
    url = None
    if account is not None:
        url = _link(await state_of(svc, account, wait=SVG_BUDGET), "song_url")
    if url is not None and url.startswith(OPEN_PREFIXES) and "\\" not in url:
        return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
    return pages.error_page(
        "Nothing to open", "Nothing that plays right now can be opened.", status=404, demo=False
    )


async def colours(request: Request) -> Response:
    """``/p/{id}/colours``: the ``cover`` theme's colours for the cover shown now, as the live
    widget's CSS custom properties, drawn from the cover exactly as the cards' are (every text
    at 4.5:1 or better); the theme's own without a usable cover. ``cover`` says which.
    ``?theme=`` another theme: its colours with the cover's accent (``accent=cover``), readable
    on its background as on the cards."""
    try:
        theme = Theme(request.query_params.get("theme", Theme.COVER))
    except ValueError:
        known = ", ".join(t.value for t in Theme)
        raise BadRequest(f"theme must be one of: {known}.", headers=CORS) from None
    svc = services(request)
    account = await svc.published.get(request.path_params["public_id"])
    if account is None:
        raise NotFound
    deadline = svc.runtime.clock.now() + SVG_BUDGET
    image = _link(await state_of(svc, account, wait=SVG_BUDGET * 0.6), "album_image_url")
    palette = THEMES[theme].palette
    cover = None
    if image:
        with contextlib.suppress(TimeoutError):
            async with svc.runtime.clock.timeout(deadline - svc.runtime.clock.now()):
                cover = await svc.covers.data_uri(image)
    found = cover_colours(cover) if cover else None
    if found is not None:
        palette = (painted if theme is Theme.COVER else accented)(palette, found)
    body = {"cover": image, "properties": dict(palette.items())}
    return JSONResponse(body, headers={**CORS, **NO_CACHE})


def _link(state: State, field: Literal["album_image_url", "song_url"]) -> str | None:
    """The cover or Spotify link of what plays, or else of what played last."""
    if isinstance(state, Playing):
        return getattr(state, field)  # type: ignore[no-any-return]
    if isinstance(state, Nothing) and state.last_played is not None:
        return getattr(state.last_played, field)  # type: ignore[no-any-return]
    return None


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}
