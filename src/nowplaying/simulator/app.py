"""The :class:`Simulator`: a simulated Spotify (accounts, Web API, covers, control) as an ASGI app,
with a simulated Last.fm, ListenBrainz and Cover Art Archive (:mod:`nowplaying.simulator.coverart`)
beside it on the same clock.

It knows nothing of the project's Spotify client: it is a second, independent reading of
``spotify-contract.md``, so a misunderstanding in one shows up as a failing test.
"""

from __future__ import annotations

import functools

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from nowplaying.simulator import api, control, coverart, oauth
from nowplaying.simulator.covers import parse_file, render_png
from nowplaying.simulator.lastfm import LastFm
from nowplaying.simulator.listenbrainz import ListenBrainz
from nowplaying.simulator.world import World


class Simulator(World):
    """A simulated Spotify: apps, users, their playback, faults on demand; ``.app`` serves it."""

    @functools.cached_property
    def app(self) -> Starlette:
        return build_app(self, control_api=self.control)

    @functools.cached_property
    def lastfm(self) -> LastFm:
        """The simulated Last.fm of the same world (its ``.app`` serves it)."""
        return LastFm(self.clock)

    @functools.cached_property
    def listenbrainz(self) -> ListenBrainz:
        """The simulated ListenBrainz of the same world (its ``.app`` serves it)."""
        return ListenBrainz(self.clock)


def build_app(sim: World, *, control_api: bool = True) -> Starlette:
    """A Starlette app serving ``sim``."""

    async def cover(request: Request) -> Response:
        sim.calls["cover"] += 1
        parsed = parse_file(request.path_params["filename"])
        if parsed is None:
            return api.api_error(404, "Non existing id")
        return Response(
            render_png(*parsed),
            media_type="image/png",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = "Service not found" if status == 404 else (getattr(exc, "detail", "") or "Error")
        return JSONResponse({"error": {"status": status, "message": message}}, status)

    routes: list[BaseRoute] = [
        *oauth.routes(sim),
        *api.routes(sim),
        Route("/covers/{filename}", cover, methods=["GET"]),
        *coverart.routes(sim),
    ]
    if control_api:
        routes += control.routes(sim)
    return Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: http_error,
            control.ControlError: control.control_error,
        },
    )
