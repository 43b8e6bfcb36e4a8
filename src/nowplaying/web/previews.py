"""Link previews and oEmbed: what a pasted ``/p/{id}`` link unfurls to, and ``/oembed``.

Chat apps read Open Graph and Twitter meta tags and show no SVG, so the page names what plays and
points at the 1200x630 PNG card; blog engines find the iframe through oEmbed discovery. Every text
is the upstream's, escaped by the templates or :func:`html.escape`.
"""

from __future__ import annotations

import hashlib
import html
import re
import urllib.parse

from starlette.requests import Request
from starlette.responses import Response

from nowplaying.cards.card import look
from nowplaying.cards.options import BadOption, CardOptions, card_options
from nowplaying.cards.png import SOCIAL_HEIGHT, SOCIAL_WIDTH
from nowplaying.cards.text import clean
from nowplaying.schema import Error, ErrorCode, Nothing, OEmbed, Playing, State
from nowplaying.store import Account
from nowplaying.web.errors import BadRequest, NotFound, Refusal, json_response
from nowplaying.web.pages import Preview
from nowplaying.web.public import CORS, EDGE_CACHE, SVG_BUDGET, state_of
from nowplaying.web.state import Services, services

__all__ = ["Preview", "oembed", "preview", "preview_for"]

PROVIDER = "nowplaying"
OEMBED_CACHE_AGE = 60
"""Seconds a consumer may keep an oEmbed answer: the iframe updates itself, the title ages."""
_WIDGET_PATH = re.compile(r"^/p/([A-Za-z0-9_-]{16,64})$")


class NotImplementedFormat(Refusal):
    """oEmbed in a format other than JSON (the spec's 501)."""

    status, code = 501, ErrorCode.NOT_IMPLEMENTED


def words(state: State) -> tuple[str, str]:
    """``(title, description)`` for what ``state`` shows."""
    if isinstance(state, Playing) and clean(state.title):
        title = _by(clean(state.title), clean(state.artist))
        album = clean(state.album or "")
        doing = "Now playing on Spotify" if state.is_playing else "Paused on Spotify"
        return title, f"{doing} · {album}" if album else doing
    if isinstance(state, Nothing) and state.last_played and clean(state.last_played.title):
        last = state.last_played
        return _by(clean(last.title), clean(last.artist)), "Last played on Spotify"
    if isinstance(state, Error) and state.error is ErrorCode.RECONNECT_REQUIRED:
        return "Now playing", "The owner needs to reconnect Spotify."
    if isinstance(state, Nothing):
        return "Not playing", "Nothing on Spotify right now."
    return "Now playing", "What plays on Spotify, live."


def _by(title: str, artist: str) -> str:
    return f"{artist} \u2013 {title}" if artist else title


async def preview(
    svc: Services, account: Account, public_id: str, options: CardOptions, query: str
) -> Preview:
    """The preview of ``/p/{public_id}?{query}`` as it plays now."""
    state = await state_of(svc, account, wait=SVG_BUDGET * 0.6)
    title, description = words(state)
    origin = svc.public_origin
    page = f"{origin}/p/{public_id}" + (f"?{query}" if query else "")
    # A crawler keeps an image by its URL: a version per track makes a new track a new image.
    version = hashlib.sha256(f"{title}\n{description}".encode()).hexdigest()[:10]
    image_query = urllib.parse.urlencode([*urllib.parse.parse_qsl(query), ("v", version)])
    return Preview(
        title=title,
        description=description,
        page_url=page,
        image_url=f"{origin}/p/{public_id}/social.png?{image_query}",
        image_alt=f"{title}: {description}",
        theme_color=_opaque(look(options).palette.accent),
        oembed_url=f"{origin}/oembed?" + urllib.parse.urlencode({"url": page, "format": "json"}),
    )


async def preview_for(request: Request) -> Preview | None:
    """The preview of the widget page asked for, or None (a bad option, an unknown link: the
    page says so itself)."""
    svc = services(request)
    public_id = request.path_params["public_id"]
    try:
        options = card_options(request.query_params, CardOptions)
    except BadOption:
        return None
    account = await svc.published.get(public_id)
    if account is None:
        return None
    return await preview(svc, account, public_id, options, request.url.query)


def _opaque(colour: str) -> str:
    """A ``#rrggbb`` colour for ``theme-color`` (an accent with alpha loses it)."""
    return colour[:7] if re.fullmatch(r"#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?", colour) else "#1db954"


async def oembed(request: Request) -> Response:
    """``/oembed?url=<a /p/ link>&format=json[&maxwidth=&maxheight=]``: the iframe, as ``rich``.

    A link of another site or an unknown widget is a 404, a format other than JSON a 501 (the
    oEmbed spec's answers), a bad size or card option a 400 naming it."""
    svc = services(request)
    query = request.query_params
    if query.get("format", "json") != "json":
        raise NotImplementedFormat("Only format=json is offered.", headers=CORS)
    url = query.get("url")
    if not url:
        raise BadRequest("The url parameter is required.", headers=CORS)
    max_width, max_height = _bound(query.get("maxwidth")), _bound(query.get("maxheight"))
    parts = urllib.parse.urlsplit(url)
    found = _WIDGET_PATH.match(parts.path)
    if f"{parts.scheme}://{parts.netloc}" != svc.public_origin or found is None:
        raise NotFound("Not a widget link of this site.", headers=CORS)
    public_id = found.group(1)
    account = await svc.published.get(public_id)
    if account is None:
        raise NotFound("This widget link does not exist.", headers=CORS)
    try:
        options = card_options(dict(urllib.parse.parse_qsl(parts.query)), CardOptions)
    except BadOption as e:
        raise BadRequest(str(e), headers=CORS) from e
    options = _fitted(options, max_width, max_height)
    lay = look(options).layout
    seen = await preview(svc, account, public_id, options, _query_of(options, parts.query))
    frame = (
        f'<iframe src="{html.escape(seen.page_url)}" width="{lay.width}" height="{lay.height}"'
        f' style="border:0" title="{html.escape(seen.title)}" loading="lazy"></iframe>'
    )
    answer = OEmbed(
        version="1.0",
        kind="rich",
        title=seen.title,
        provider_name=PROVIDER,
        provider_url=svc.public_origin,
        html=frame,
        width=lay.width,
        height=lay.height,
        thumbnail_url=seen.image_url,
        thumbnail_width=SOCIAL_WIDTH,
        thumbnail_height=SOCIAL_HEIGHT,
        cache_age=OEMBED_CACHE_AGE,
    )
    return json_response(answer, headers={**CORS, **EDGE_CACHE})


def _bound(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or int(value) < 1:
        raise BadRequest("maxwidth and maxheight are whole numbers of pixels.", headers=CORS)
    return int(value)


def _fitted(options: CardOptions, max_width: int | None, max_height: int | None) -> CardOptions:
    """``options`` narrowed (the card's ``width``) and, if need be, made compact to fit; a 404
    when no card fits (the spec's answer for a size it cannot meet)."""
    lay = look(options).layout
    if max_width is not None and lay.width > max_width:
        if max_width < 240:
            raise NotFound("No card fits in maxwidth (240 pixels at least).", headers=CORS)
        options = options.model_copy(update={"width": max_width})
    if max_height is not None and look(options).layout.height > max_height:
        options = options.model_copy(update={"size": "compact"})
        if look(options).layout.height > max_height:
            raise NotFound("No card fits in maxheight.", headers=CORS)
    return options


def _query_of(options: CardOptions, original: str) -> str:
    """The widget page's query: the link's own, with the width and size fitted for the frame."""
    pairs = [(k, v) for k, v in urllib.parse.parse_qsl(original) if k not in ("width", "size")]
    if options.width is not None:
        pairs.append(("width", str(options.width)))
    if options.compact:
        pairs.append(("size", "compact"))
    return urllib.parse.urlencode(pairs)
