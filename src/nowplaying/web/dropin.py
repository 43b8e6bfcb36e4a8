"""The drop-in embed ``/p/{id}/embed.js``: a ``<now-playing>`` custom element, no iframe.

The script is ``static/widget.js`` minified once (rjsmin): the embed page's own code, one
definition of the widget.
"""

from __future__ import annotations

import functools
from pathlib import Path

import rjsmin
from starlette.requests import Request
from starlette.responses import Response

from nowplaying.web.errors import NotFound
from nowplaying.web.public import revalidated, strong_etag
from nowplaying.web.state import services

SOURCE = Path(__file__).with_name("static") / "widget.js"
HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Cache-Control": "public, max-age=600",
}


@functools.cache
def script() -> tuple[bytes, str]:
    """The minified script and its ETag (read on first use: no I/O at import)."""
    text = SOURCE.read_text(encoding="utf-8")
    body = rjsmin.jsmin(text, keep_bang_comments=True).encode()
    return body, strong_etag(body)


async def embed_js(request: Request) -> Response:
    """The element's script, for any published link (an unknown one is a 404)."""
    if await services(request).published.get(request.path_params["public_id"]) is None:
        raise NotFound
    body, etag = script()
    return revalidated(request, body, "text/javascript; charset=utf-8", {**HEADERS, "ETag": etag})
