"""``/api/spotify`` (JSON) and ``/api/spotify/events`` (SSE) for the session's account.

Both answer from the live engine's shared state: viewers never cost upstream calls.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

from nowplaying.engine.snapshot import Snapshot, view_of
from nowplaying.schema import Budget, Error, ErrorCode
from nowplaying.store import AccountStatus
from nowplaying.web.errors import (
    PRIVATE,
    PRIVATE_RAW,
    MustReconnect,
    NotConnected,
    ServiceUnavailable,
    json_response,
)
from nowplaying.web.fast import REUSE_SECONDS, hold
from nowplaying.web.state import Services, services


async def _account_id(request: Request, svc: Services) -> str:
    """The session's account id; refuses (401) without a session or a usable grant."""
    found = await svc.sessions.account(request)
    if found is None:
        raise NotConnected
    account_id, status = found
    if status is AccountStatus.RECONNECT_REQUIRED:
        raise MustReconnect
    return account_id


def snapshot_response(snap: Snapshot | None, now: float, fallback_retry: float) -> Response:
    """The JSON answer for a snapshot (:func:`~nowplaying.engine.snapshot.view_of`): data, maybe
    stale; reconnect required refused 401, no data yet 503 with Retry-After."""
    view = view_of(snap, now)
    if isinstance(view, Error):
        if view.error is ErrorCode.RECONNECT_REQUIRED:
            raise MustReconnect
        retry = snap.retry_after if snap and snap.retry_after else fallback_retry
        raise ServiceUnavailable("Spotify is not answering; try again shortly.", retry_after=retry)
    return json_response(view, headers=PRIVATE_RAW)


class BareEndpoint:
    """A GET/HEAD route as a bare ASGI app: for the routes whose cost is paid per viewer.

    An event stream lives as long as its viewer, so every frame under it is paid per viewer, and
    ``/api/spotify`` is asked every few seconds by every open widget; this skips Starlette's
    ``request_response`` wrapper (a second exception-handling closure and its frames). Refusals
    raised by ``handler`` still reach the app's exception handlers, which sit above the router.
    """

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self.handler = handler
        self.__name__ = handler.__name__  # the route's name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(405, headers={"Allow": "GET, HEAD"})
        response = await self.handler(Request(scope, receive))
        await response(scope, receive, send)


async def _events(request: Request) -> Response:
    svc = services(request)
    account_id = await _account_id(request, svc)
    return svc.streams.response(
        account_id,
        last_event_id=request.headers.get("last-event-id"),
        headers={**PRIVATE, "X-Accel-Buffering": "no", "Connection": "keep-alive"},
    )


events = BareEndpoint(_events)


async def _now_playing(request: Request) -> Response:
    svc = services(request)
    account_id = await _account_id(request, svc)
    hub = svc.runtime.hub
    snap = await hub.current(account_id)
    now = svc.runtime.clock.now()
    response = snapshot_response(snap, now, hub.poll_seconds)
    session = svc.sessions.held(request)
    if session is not None and snap is not None:
        still = session  # (for the type checker: not None from here)
        hold(request.scope, now + REUSE_SECONDS, lambda: still() and hub.touch(account_id) is snap)
    return response


now_playing = BareEndpoint(_now_playing)


async def favicon(request: Request) -> Response:
    """The icon, for browsers that ask for /favicon.ico whatever the page says."""
    return FileResponse(
        Path(__file__).parent / "static" / "favicon.svg",
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


async def healthz(request: Request) -> Response:
    """Liveness, which instance answered (for load balancers and the multi-instance test), the
    call budget in use and any app-wide pause."""
    svc = services(request)
    pause = svc.runtime.hub.pause
    body: dict[str, object] = {"ok": True, "instance": svc.runtime.hub.instance_id}
    if svc.runtime.client.budget is not None:
        usage = await svc.runtime.client.budget.usage()
        body["budget"] = Budget.model_validate(asdict(usage)).data()
    body["pause"] = {"until": pause.until, "reason": pause.reason} if pause else None
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
