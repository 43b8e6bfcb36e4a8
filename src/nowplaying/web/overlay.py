"""The pages made to be framed or captured: the embed page ``/p/{id}`` and the OBS overlay.

Both take the card's options, validated by the same model as the SVG card, and run live over the
public event stream, which reconnects by itself: an overlay recovers after OBS or the server
restarts.
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
