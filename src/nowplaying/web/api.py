"""``/api/spotify`` (JSON) and ``/api/spotify/events`` (Server-Sent Events) for the session's
account, both answered from the live engine's shared state: viewers never cost Spotify calls.
"""

from __future__ import annotations

import asyncio
import random
import resource
import weakref
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

from nowplaying.engine import fanout
from nowplaying.engine.fanout import Subscription
from nowplaying.engine.live import LiveHub, Snapshot, Status
from nowplaying.schema import Budget, ErrorCode, State, error
from nowplaying.store import AccountStatus
from nowplaying.web.errors import (
    PRIVATE,
    PRIVATE_RAW,
    Busy,
    MustReconnect,
    NotConnected,
    Unavailable,
    json_response,
)
from nowplaying.web.state import Services, services

HEARTBEAT_SECONDS = 15.0
RECONNECT_MS = (500, 3000)
"""The range a draining stream's ``retry:`` is drawn from, uniformly."""
_JITTER = random.Random()  # noqa: S311 - spreading reconnects, not secrets


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
    """The JSON answer for a snapshot: data (maybe stale); refuses to reconnect, or 503."""
    if snap is not None and snap.status is Status.RECONNECT:
        raise MustReconnect
    if snap is None or snap.playing is None:
        retry = snap.retry_after if snap and snap.retry_after else fallback_retry
        raise Unavailable("Spotify is not answering; try again shortly.", retry_after=retry)
    return json_response(snap.view(now), headers=PRIVATE_RAW)


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
    return event_stream(
        svc.hub,
        account_id,
        svc.clock.now,
        last_event_id=request.headers.get("last-event-id"),
        sleep=svc.clock.sleep,
        headers={**PRIVATE, "X-Accel-Buffering": "no", "Connection": "keep-alive"},
    )


events = BareEndpoint(_events)


async def _now_playing(request: Request) -> Response:
    svc = services(request)
    account_id = await _account_id(request, svc)
    snap = await svc.hub.current(account_id)
    return snapshot_response(snap, svc.clock.now(), svc.hub.poll_seconds)


now_playing = BareEndpoint(_now_playing)


def event_stream(
    hub: LiveHub,
    account_id: str,
    now: Callable[[], float],
    *,
    last_event_id: str | None,
    sleep: Callable[[float], Awaitable[None]],
    headers: dict[str, str],
) -> Response:
    """The SSE response for an account, or a 503 when this process has no descriptor to spare.

    Each open stream holds a file descriptor; past the soft RLIMIT_NOFILE less
    :data:`SPARE_FILES`, a new viewer is refused at once (``Retry-After``, connection closed)
    instead of left unanswered while the server cannot accept.
    """
    if hub.counts["sse_open"] >= stream_capacity():
        hub.counts["sse_refused"] += 1
        busy = Busy("Too many viewers on this server; try again shortly.", retry_after=5)
        return busy.response({**headers, "Connection": "close"})

    def stream(closed: asyncio.Future[Any]) -> AsyncGenerator[str, None]:
        return sse_stream(
            hub, account_id, now, last_event_id=last_event_id, sleep=sleep, closed=closed
        )

    return EventStream(stream, headers)


SPARE_FILES = 64
"""Descriptors kept for everything that is not an event stream (the listener, the store,
Spotify connections, other requests, the 503s themselves)."""


def stream_capacity() -> int:
    """How many event streams this process can hold open: its soft RLIMIT_NOFILE less spares."""
    return max(1, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - SPARE_FILES)


class EventStream(Response):
    """A ``text/event-stream`` response that ends when the viewer hangs up.

    Leaner than Starlette's ``StreamingResponse`` (an anyio task group and two tasks per
    response): the request's own task writes, and one small task waits for the disconnect,
    which the stream is handed so it stops waiting for changes at once.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        stream: Callable[[asyncio.Future[Any]], AsyncGenerator[str, None]],
        headers: dict[str, str],
    ) -> None:
        self.status_code = 200
        self.background = None
        self._stream = stream
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        closed = asyncio.ensure_future(_disconnected(receive))
        stream = self._stream(closed)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            self.raw_headers = []  # this response lives as long as its viewer: let them go
            async for chunk in stream:
                await send(
                    {"type": "http.response.body", "body": chunk.encode(), "more_body": True}
                )
            if not closed.done():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await stream.aclose()
            closed.cancel()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


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
    closed: asyncio.Future[Any] | None = None,
) -> AsyncGenerator[str, None]:
    """The event stream: the current state on connect, then every change, with heartbeats.

    Each event's id is the snapshot's version (per account, shared by every instance). A viewer
    that reconnects with ``Last-Event-ID`` equal to the current version already has it and gets
    only later changes; any other id (older, unknown, junk) gets the current state at once.
    When the server drains (``hub.draining``), the stream ends with a ``retry:`` drawn from
    :data:`RECONNECT_MS`, so a thousand viewers do not all come back in the same instant.
    Heartbeats come from one shared tick (:class:`_Beat`) every ``heartbeat`` seconds of
    ``sleep`` (the app's clock): a stream silent for at least half of that then sends a comment,
    so none is silent longer than 1.5 x ``heartbeat``. ``closed`` (the viewer hung up) ends it.

    Per viewer and wait this costs one future, which the next change (the account's
    :class:`~nowplaying.engine.fanout.Channel`), the next tick or drain (:class:`_Beat`) and the
    hang-up all resolve: no task, queue or ``asyncio.wait`` per viewer. Each change is encoded once
    (:func:`_event`) and the same text goes to every viewer.
    """
    rng = rng or _JITTER
    yield "retry: 3000\n: connected\n\n"
    if hub.draining.is_set():
        hub.counts["sse_drained"] += 1
        yield reconnect_hint(rng)
        return
    sent = last_event_id.strip() if last_event_id else None
    beat = _Beat.of(hub, heartbeat, sleep or _wall_sleep)
    beat.join()
    hub.counts["sse_open"] += 1
    hangup = closed or asyncio.get_running_loop().create_future()
    quiet_since = now()
    try:
        # The subscription holds the current state first (now, or when the first poll lands).
        async with hub.subscribe(account_id) as sub:
            while True:
                if sub.empty():
                    wake = _Wait(sub, beat, hangup)
                    try:
                        await wake.future
                    finally:
                        wake.done()
                    if hangup.done():
                        return
                    if hub.draining.is_set():
                        hub.counts["sse_drained"] += 1
                        yield reconnect_hint(rng)
                        return
                    if sub.empty():  # the tick
                        if now() - quiet_since >= heartbeat / 2:
                            quiet_since = now()
                            yield ": heartbeat\n\n"
                        continue
                snap = sub.get_nowait()
                if not _has(sent, snap.version):
                    sent = str(snap.version)
                    quiet_since = now()
                    yield _event(snap, quiet_since)
    finally:
        hub.counts["sse_open"] -= 1
        beat.leave()


class _Wait:
    """A stream's one wait: a future the next change, tick, drain or hang-up resolves."""

    __slots__ = ("beat", "future", "hangup", "sub")

    def __init__(self, sub: Subscription, beat: _Beat, hangup: asyncio.Future[Any]) -> None:
        self.sub, self.beat, self.hangup = sub, beat, hangup
        self.future: asyncio.Future[None] = beat.loop.create_future()
        sub.wake_on_change(self.future)
        beat.wake_on_tick(self.future)
        if hangup.done():
            fanout.wake(self.future)
        else:
            hangup.add_done_callback(self._hung_up)

    def _hung_up(self, _: object) -> None:
        fanout.wake(self.future)

    def done(self) -> None:
        """Leave every set the future was handed to (each an O(1) removal)."""
        self.sub.forget(self.future)
        self.beat.forget(self.future)
        self.hangup.remove_done_callback(self._hung_up)


class _Beat:
    """The heartbeat tick and the drain, shared by every stream of a hub (per heartbeat and
    clock): one task, instead of a timer and a drain waiter per viewer.

    A waiting stream hands it its wait future (:meth:`wake_on_tick`); every tick, and the start
    of the drain, resolves them all. The task runs while some stream has joined.
    """

    def __init__(
        self, hub: LiveHub, every: float, sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        self.hub, self.every, self.sleep = hub, every, sleep
        self.loop = asyncio.get_running_loop()
        self.pokes: set[asyncio.Future[None]] = set()
        self.streams = 0
        self.task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, hub: LiveHub, every: float, sleep: Callable[[float], Awaitable[None]]) -> _Beat:
        beats = _BEATS.setdefault(hub, {})
        beat = beats.get((every, sleep))
        if beat is None or beat.loop is not asyncio.get_running_loop():
            beat = beats[(every, sleep)] = cls(hub, every, sleep)
        return beat

    def wake_on_tick(self, future: asyncio.Future[None]) -> None:
        """Resolve ``future`` at the next tick (at once if draining has begun)."""
        if self.hub.draining.is_set():
            fanout.wake(future)
        self.pokes.add(future)

    def forget(self, future: asyncio.Future[None]) -> None:
        self.pokes.discard(future)

    def join(self) -> None:
        self.streams += 1
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="sse-heartbeat")

    def leave(self) -> None:
        self.streams -= 1
        if self.streams <= 0 and self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        drained = asyncio.ensure_future(self.hub.draining.wait())
        nap: asyncio.Future[None] | None = None
        try:
            while True:
                nap = asyncio.ensure_future(self.sleep(self.every))
                await asyncio.wait({drained, nap}, return_when=FIRST_COMPLETED)
                pokes, self.pokes = self.pokes, set()
                for future in pokes:
                    fanout.wake(future)
                if drained.done():
                    return
        finally:
            drained.cancel()
            _cancel(nap)


_BEATS: weakref.WeakKeyDictionary[LiveHub, dict[tuple[float, object], _Beat]] = (
    weakref.WeakKeyDictionary()
)


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


FRESH_SECONDS = 1.0
"""How long one view of a snapshot is handed out to event streams: every viewer of a change gets
the same text; a viewer connecting later gets progress measured again (``at`` says when it
holds)."""
_UNKNOWN = error(ErrorCode.UNAVAILABLE, stale=True)
_FRAMED: dict[int, tuple[State, int, str]] = {}
"""The event text of the last few views (by the view's identity, and the snapshot version)."""


def _event(snap: Snapshot, now: float) -> str:
    """The SSE event for a snapshot: its view is made once per change (the snapshot hands the
    same one to every viewer for :data:`FRESH_SECONDS`), and framed once, not once per viewer."""
    unknown = snap.playing is None and snap.status is not Status.RECONNECT
    view = _UNKNOWN if unknown else snap.view(now, reuse=FRESH_SECONDS)
    framed = _FRAMED.get(id(view))
    if framed is not None and framed[0] is view and framed[1] == snap.version:
        return framed[2]
    text = f"id: {snap.version}\ndata: {view.body.decode()}\n\n"
    _FRAMED[id(view)] = (view, snap.version, text)
    if len(_FRAMED) > 64:
        del _FRAMED[next(iter(_FRAMED))]
    return text


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
    pause = svc.hub.pause
    body: dict[str, object] = {"ok": True, "instance": svc.hub.instance_id}
    if svc.client.budget is not None:
        usage = await svc.client.budget.usage()
        body["budget"] = Budget.model_validate(asdict(usage)).data()
    body["pause"] = {"until": pause.until, "reason": pause.reason} if pause else None
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
