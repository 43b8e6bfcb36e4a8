"""Push from any player: a ListenBrainz-compatible submit API and Web Scrobbler's webhook.

Answering in ListenBrainz's shape lets every client that takes a custom ListenBrainz URL report
here with the widget's push token. A push reaches every viewer through the live engine with no
upstream call; the widget need not be published.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from nowplaying.sources import push
from nowplaying.store import StoreError
from nowplaying.web.state import Services, services

SUBMIT_LISTENS = "/1/submit-listens"
"""The one path whose body may be ListenBrainz's (:data:`~nowplaying.sources.push.MAX_BODY_BYTES`,
an import of 1,000 listens) rather than the edge's 64 KiB."""
LARGE_BODY = 64 * 1024
"""Past this a body is read under :attr:`Services.large_reads` and parsed off the event loop."""
NO_HEADER = "You need to provide an Authorization header."
BAD_TOKEN = "Invalid authorization token."


def lb_error(status: int, message: str) -> Response:
    """An error in ListenBrainz's shape."""
    return JSONResponse(
        {"code": status, "error": message}, status, headers={"Cache-Control": "no-store"}
    )


def _token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "token" else ""


Reader = Callable[[bytes, float], list[push.Push]]


async def _accept(request: Request, token: str, read: Reader) -> Response:
    """Find the widget ``token`` names, read the body with ``read`` and hand every push to the
    live engine; refusals in ListenBrainz's shape."""
    svc = services(request)
    try:
        account_id = await svc.runtime.store.account_of_push_token(token) if token else None
    except StoreError:
        return lb_error(503, "Storage is unavailable; try again shortly.")
    if account_id is None:
        return lb_error(401, BAD_TOKEN)
    try:
        pushes = await _read(request, svc, read)
    except push.Rejected as e:
        return lb_error(400, str(e))
    for one in pushes:
        await svc.runtime.hub.push(account_id, one)
    return JSONResponse({"status": "ok"})


async def _read(request: Request, svc: Services, read: Reader) -> list[push.Push]:
    """The body read into pushes; a large one (a real import: up to 10 MB) only while one of
    few slots is free, so memory stays bounded whatever arrives at once, and parsed in a
    thread so viewers are not held up. The edge bounds the size, the guard the time."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) <= LARGE_BODY:
        return read(await request.body(), svc.runtime.clock.now())
    async with svc.large_reads:
        body = await request.body()
        return await asyncio.to_thread(read, body, svc.runtime.clock.now())


async def submit_listens(request: Request) -> Response:
    """``POST /1/submit-listens``: ``playing_now``, ``single`` or ``import``."""
    token = _token(request)
    if not token:
        return lb_error(401, NO_HEADER)
    coverart_url = services(request).coverart_url
    return await _accept(
        request, token, lambda body, now: push.listenbrainz(body, now, coverart_url)
    )


async def validate_token(request: Request) -> Response:
    """``GET /1/validate-token``: whether a push token is good, and whose widget it names."""
    svc = services(request)
    token = _token(request) or request.query_params.get("token", "")
    if not token:
        return lb_error(400, "You need to provide an Authorization token.")
    try:
        account_id = await svc.runtime.store.account_of_push_token(token)
        account = await svc.runtime.store.get_account_info(account_id) if account_id else None
    except StoreError:
        return lb_error(503, "Storage is unavailable; try again shortly.")
    if account is None:
        return JSONResponse({"code": 200, "message": "Token invalid.", "valid": False})
    return JSONResponse(
        {"code": 200, "message": "Token valid.", "valid": True, "user_name": account.display_name}
    )


async def web_scrobbler(request: Request) -> Response:
    """``POST /hooks/web-scrobbler/{token}``: ``nowplaying``, ``paused``, ``resumedplaying``,
    ``scrobble`` (``loved`` is acknowledged and ignored)."""

    covers = services(request).covers

    def read(body: bytes, now: float) -> list[push.Push]:
        one = push.web_scrobbler(body, now, covers.allows)
        return [one] if one is not None else []

    return await _accept(request, request.path_params["token"], read)
