"""A simulated Cover Art Archive and archive.org, so covers by release MBID need no network.

Written from musicbrainz.org/doc/Cover_Art_Archive/API: ``/coverart/release/{mbid}/front-250``
(also ``-500``, ``-1200``) is a 307 to the image on archive.org
(``/archive/download/mbid-{mbid}/mbid-{mbid}-1_thumb250.png``), which archive.org sends on with
a 302 to one of its data nodes (``/archive/ia/...``); a release without a cover is a 404. Every
release has a cover, drawn from its id, unless listed in :attr:`World.no_cover`.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from nowplaying.simulator.covers import render_png
from nowplaying.simulator.world import World

ARCHIVE_PREFIX = "/coverart"
"""Where the archive sits below the simulator's base URL (``COVERART_URL`` in demo mode)."""
_MBID = re.compile(r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}")
_SIZES = {"250": 250, "500": 500, "1200": 1200}
_FILE = re.compile(r"mbid-(?P<mbid>[0-9a-f-]{36})-1_thumb(?P<size>250|500|1200)\.png")


def routes(sim: World) -> list[Route]:
    """The archive's front-cover redirect, archive.org's hop to a data node, and the image."""

    async def front(request: Request) -> Response:
        sim.calls["coverart"] += 1
        mbid, size = request.path_params["mbid"], request.path_params["size"]
        if not _MBID.fullmatch(mbid) or size not in _SIZES:
            return PlainTextResponse("Not Found", 404)
        if mbid in sim.no_cover:
            return PlainTextResponse(f"No cover art found for release {mbid}", 404)
        file = f"mbid-{mbid}/mbid-{mbid}-1_thumb{size}.png"
        return RedirectResponse(f"{sim.base_url(request)}/archive/download/{file}", 307)

    async def download(request: Request) -> Response:
        sim.calls["archive"] += 1
        item, file = request.path_params["item"], request.path_params["file"]
        return RedirectResponse(f"{sim.base_url(request)}/archive/ia/{item}/{file}", 302)

    async def node(request: Request) -> Response:
        sim.calls["archive_node"] += 1
        match = _FILE.fullmatch(request.path_params["file"])
        if match is None or request.path_params["item"] != f"mbid-{match['mbid']}":
            return PlainTextResponse("Not Found", 404)
        side = _SIZES[match["size"]]
        return Response(
            render_png(f"caa-{match['mbid']}", side, side),
            media_type="image/png",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    return [
        Route(ARCHIVE_PREFIX + "/release/{mbid}/front-{size}", front, methods=["GET"]),
        Route("/archive/download/{item}/{file}", download, methods=["GET"]),
        Route("/archive/ia/{item}/{file}", node, methods=["GET"]),
    ]
