"""``/api/spotify`` (JSON) and ``/api/spotify/events`` (Server-Sent Events) for the session's
account, both answered from the live engine's shared state: viewers never cost Spotify calls.
"""

from __future__ import annotations

import asyncio
import json
import random
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse

from nowplaying.live import LiveHub, Snapshot, Status
from nowplaying.store import AccountStatus

from .state import services

PRIVATE = {"Cache-Control": "private, no-store"}
HEARTBEAT_SECONDS = 15.0
RECONNECT_MS = (500, 3000)
"""The range a draining stream's ``retry:`` is drawn from, uniformly."""
_JITTER = random.Random()  # noqa: S311 - spreading reconnects, not secrets


async def _account_id(request: Request) -> tuple[str | None, Response | None]:
    """The session's account id, or the 401 to answer with."""
    found = await services(request).sessions.account(request)
    if found is None:
        return None, JSONResponse({"error": "not_connected"}, 401, headers=PRIVATE)
    account_id, status = found
    if status is AccountStatus.RECONNECT_REQUIRED:
        return None, JSONResponse({"error": "reconnect_required"}, 401, headers=PRIVATE)
    return account_id, None


def snapshot_response(snap: Snapshot | None, now: float, fallback_retry: float) -> Response:
    """The JSON answer for a snapshot: data (maybe stale), reconnect, or 503."""
    if snap is not None and snap.status is Status.RECONNECT:
        return JSONResponse({"error": "reconnect_required"}, 401, headers=PRIVATE)
    if snap is None or snap.playing is None:
        retry = snap.retry_after if snap and snap.retry_after else fallback_retry
        return JSONResponse(
            {"error": "unavailable", "message": "Spotify is not answering; try again shortly."},
            503,
            headers={**PRIVATE, "Retry-After": str(max(1, round(retry)))},
        )
    return JSONResponse(snap.to_json(now), headers=PRIVATE)


async def now_playing(request: Request) -> Response:
    account_id, refusal = await _account_id(request)
    if refusal is not None:
        return refusal
    assert account_id is not None  # noqa: S101 - refusal is None exactly when we have an id
    svc = services(request)
    snap = await svc.hub.current(account_id)
    return snapshot_response(snap, svc.clock.now(), svc.hub.poll_seconds)


async def events(request: Request) -> Response:
    account_id, refusal = await _account_id(request)
    if refusal is not None:
        return refusal
    assert account_id is not None  # noqa: S101
    svc = services(request)
    return StreamingResponse(
        sse_stream(
            svc.hub,
            account_id,
            svc.clock.now,
            last_event_id=request.headers.get("last-event-id"),
            sleep=svc.clock.sleep,
        ),
        media_type="text/event-stream",
        headers={**PRIVATE, "X-Accel-Buffering": "no", "Connection": "keep-alive"},
    )


def reconnect_hint(rng: random.Random) -> str:
    """The last words of a draining stream: come back after a jittered delay."""
    return f"retry: {rng.randint(*RECONNECT_MS)}\n: server restarting\n\n"


async def sse_stream(
    hub: LiveHub,
    account_id: str,
    now: Callable[[], float],
    heartbeat: float = HEARTBEAT_SECONDS,
    *,
    last_event_id: str | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> AsyncGenerator[str, None]:
    """The event stream: the current state on connect, then every change, with heartbeats.

    Each event's id is the snapshot's version (per account, shared by every instance). A viewer
    that reconnects with ``Last-Event-ID`` equal to the current version (or a little ahead of
    it: another instance was quicker, see :data:`AHEAD`) already has it and gets only later
    changes; any other id (older, unknown, junk) gets the current state at once.
    When the server drains (``hub.draining``), the stream ends with a ``retry:`` drawn from
    :data:`RECONNECT_MS`, so a thousand viewers do not all come back in the same instant.
    A heartbeat comment follows ``heartbeat`` seconds of silence, timed by ``sleep`` (the
    app's clock).
    """
    rng = rng or _JITTER
    nap = sleep or _wall_sleep
    yield "retry: 3000\n: connected\n\n"
    if hub.draining.is_set():
        hub.counts["sse_drained"] += 1
        yield reconnect_hint(rng)
        return
    sent = last_event_id.strip() if last_event_id else None
    hub.counts["sse_open"] += 1
    drained = asyncio.ensure_future(hub.draining.wait())
    get: asyncio.Future[Snapshot] | None = None
    quiet: asyncio.Future[None] | None = None
    try:
        # The subscription receives the current state first (now, or when the first poll lands).
        async with hub.subscribe(account_id) as queue:
            while True:
                get = get or asyncio.ensure_future(queue.get())
                quiet = quiet or asyncio.ensure_future(nap(heartbeat))
                waiting: set[asyncio.Future[Any]] = {get, drained, quiet}
                await asyncio.wait(waiting, return_when=FIRST_COMPLETED)
                if drained.done():
                    hub.counts["sse_drained"] += 1
                    yield reconnect_hint(rng)
                    return
                if get.done():
                    snap, get = get.result(), None
                    if _has(sent, snap.version):
                        continue  # the viewer has this one (a reconnect, or a repeat)
                    sent = str(snap.version)
                    _cancel(quiet)
                    quiet = None
                    yield _event(snap, now())
                elif quiet.done():
                    quiet = None
                    yield ": heartbeat\n\n"
    finally:
        hub.counts["sse_open"] -= 1
        for pending in (drained, get, quiet):
            _cancel(pending)


AHEAD = 1000
"""A ``Last-Event-ID`` up to this many versions ahead of this instance's state came from a
quicker instance (pub/sub has not brought the change here yet): the viewer has it already."""


def _has(seen: str | None, version: int) -> bool:
    """Whether a viewer whose last event id is ``seen`` already has ``version``: the same one,
    or a slightly later one another instance sent it (never an id from far away or junk)."""
    if seen is None or not (seen.isascii() and seen.isdigit()):
        return False
    return 0 <= int(seen) - version <= AHEAD


async def _wall_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def _cancel(future: asyncio.Future[Any] | None) -> None:
    if future is not None:
        future.cancel()


def _event(snap: Snapshot, now: float) -> str:
    if snap.playing is None and snap.status is not Status.RECONNECT:
        data: dict[str, Any] = {"error": "unavailable", "stale": True}
    else:
        data = snap.to_json(now)
    return f"id: {snap.version}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def favicon(request: Request) -> Response:
    """The icon, for browsers that ask for /favicon.ico whatever the page says."""
    return FileResponse(
        Path(__file__).parent / "static" / "favicon.svg",
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


async def healthz(request: Request) -> Response:
    """Liveness, and which instance answered (for load balancers and the multi-instance test)."""
    svc = services(request)
    return JSONResponse(
        {"ok": True, "instance": svc.hub.instance_id}, headers={"Cache-Control": "no-store"}
    )
