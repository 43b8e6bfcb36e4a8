"""The pages made to be framed or captured: the embed page ``/p/{id}`` (for ``<iframe>``) and the
stream overlay ``/p/{id}/overlay`` (for OBS browser sources).

Both take the card's options (:class:`~nowplaying.cards.options.CardOptions`: theme, colours,
radius, width, hidden parts, idle behaviour), validated by the same model as the SVG card; a bad
value is a 400 page that names the parameter, unknown parameters are ignored.

The overlay is a transparent page without scrollbars, sized for a 1920x1080 canvas (a card in a
corner) or a strip (the whole source is the bar), in large type. The card appears on a track
change and fades ``fade`` seconds later (``0`` keeps it), or when playback pauses unless
``paused=show``; a long title scrolls (not with reduced motion). Live over the public event
stream, which reconnects by itself, so it recovers after the source or the server restarts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from nowplaying.cards.options import BadOption, CardOptions, OverlayOptions, card_options
from nowplaying.web import pages, previews
from nowplaying.web.state import services

_O = TypeVar("_O", bound=CardOptions)


async def _framable(
    request: Request, model: type[_O], render: Callable[[str, _O], HTMLResponse]
) -> Response:
    """A page any site may frame: 400 naming a bad option, 404 for an unknown link."""
    public_id = request.path_params["public_id"]
    try:
        options = card_options(request.query_params, model)
    except BadOption as e:
        response = pages.error_page("Bad parameter", str(e), status=400, demo=False)
    else:
        if await services(request).published.get(public_id) is None:
            response = pages.link_missing()
        else:
            response = render(f"/p/{public_id}", options)
    response.headers["Content-Security-Policy"] = pages.EMBED_CSP
    response.headers["Cache-Control"] = "no-cache"
    return response


async def embed(request: Request) -> Response:
    """The widget page for ``<iframe>`` embedding, on any site; pasted in a chat, it unfurls to
    what plays (:mod:`~nowplaying.web.previews`)."""
    shown = await previews.preview_for(request)
    return await _framable(request, CardOptions, functools.partial(pages.embed_page, preview=shown))


async def overlay(request: Request) -> Response:
    """The stream overlay, for OBS browser sources."""
    return await _framable(request, OverlayOptions, pages.overlay_page)
