"""Server-Sent Events: :class:`Streams`, one per app, owning its event streams' counts, the drain
that ends them on shutdown, their shared heartbeat and the framing of each change.

Per viewer and wait a stream costs one future, which the next change (the account's
:class:`~nowplaying.engine.fanout.Channel`), the next tick or the drain (:class:`_Beat`) and the
hang-up all resolve: no task, queue or ``asyncio.wait`` per viewer. Each change is framed once
(:meth:`Streams.event`) and the same text goes to every viewer.
"""

from __future__ import annotations

import asyncio
import random
import resource
from asyncio import FIRST_COMPLETED
from collections import Counter
from collections.abc import AsyncGenerator, Callable
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from nowplaying.clock import Clock
from nowplaying.engine import fanout
from nowplaying.engine.fanout import Subscription
from nowplaying.engine.live import LiveHub
from nowplaying.engine.snapshot import Snapshot, view_of
from nowplaying.schema import State
from nowplaying.web.errors import Busy

HEARTBEAT_SECONDS = 15.0
RECONNECT_MS = (500, 3000)
"""The range a draining stream's ``retry:`` is drawn from, uniformly."""
SPARE_FILES = 64
"""Descriptors kept for everything that is not an event stream (the listener, the store,
Spotify connections, other requests, the 503s themselves)."""
AHEAD = 1000
"""A ``Last-Event-ID`` up to this many versions ahead of this instance's state came from a
quicker instance (pub/sub has not brought the change here yet): the viewer has it already."""
FRESH_SECONDS = 1.0
"""How long one view of a snapshot is handed out to event streams: every viewer of a change gets
the same text; a viewer connecting later gets progress measured again (``at`` says when it
holds)."""
FRAMED_MAX = 64
"""How many framed events :meth:`Streams.event` keeps (the last few views')."""
_JITTER = random.Random()  # noqa: S311 - spreading reconnects, not secrets


def stream_capacity() -> int:
    """How many event streams this process can hold open: its soft RLIMIT_NOFILE less spares."""
    return max(1, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - SPARE_FILES)


def reconnect_hint(rng: random.Random) -> str:
    """The last words of a draining stream: come back after a jittered delay."""
    return f"retry: {rng.randint(*RECONNECT_MS)}\n: server restarting\n\n"


class Streams:
    """The app's event streams, on the live engine's shared state.

    ``counts``: ``open`` streams now, ``refused`` (no descriptor to spare), ``drained`` (ended by
    the drain with a reconnect hint). After :meth:`drain` every open stream, and every one opened
    later, ends with a ``retry:`` drawn from :data:`RECONNECT_MS`, so a thousand viewers do not
    all come back in the same instant.
    """

    def __init__(self, hub: LiveHub, clock: Clock, *, heartbeat: float = HEARTBEAT_SECONDS):
        self.hub = hub
        self.clock = clock
        self.heartbeat = heartbeat
        self.counts: Counter[str] = Counter()
        self.draining = asyncio.Event()
        """Set when the server begins to shut down."""
        self._beat: _Beat | None = None
        self._framed: dict[int, tuple[State, int, str]] = {}
        """The event text of the last few views (by the view's identity, and the version)."""

    def drain(self) -> None:
        """The server is shutting down: every stream ends with a reconnect hint."""
        self.draining.set()

    def response(
        self, account_id: str, *, last_event_id: str | None, headers: dict[str, str]
    ) -> Response:
        """The SSE response for an account, or a 503 when this process has no descriptor to spare.

        Each open stream holds a file descriptor; past the soft RLIMIT_NOFILE less
        :data:`SPARE_FILES`, a new viewer is refused at once (``Retry-After``, connection closed)
        instead of left unanswered while the server cannot accept.
        """
        if self.counts["open"] >= stream_capacity():
            self.counts["refused"] += 1
            busy = Busy("Too many viewers on this server; try again shortly.", retry_after=5)
            return busy.response({**headers, "Connection": "close"})

        def stream(closed: asyncio.Future[Any]) -> AsyncGenerator[str, None]:
            return self.stream(account_id, last_event_id=last_event_id, closed=closed)

        return EventStream(stream, headers)

    async def stream(
        self,
        account_id: str,
        *,
        last_event_id: str | None = None,
        rng: random.Random | None = None,
        closed: asyncio.Future[Any] | None = None,
    ) -> AsyncGenerator[str, None]:
        """The event stream: the current state on connect, then every change, with heartbeats.

        Each event's id is the snapshot's version (per account, shared by every instance). A
        viewer that reconnects with ``Last-Event-ID`` equal to the current version already has it
        and gets only later changes; any other id (older, unknown, junk) gets the current state
        at once. Heartbeats come from one shared tick every ``heartbeat`` seconds of the clock: a
        stream silent for at least half of that then sends a comment, so none is silent longer
        than 1.5 x ``heartbeat``. ``closed`` (the viewer hung up) ends it.
        """
        rng = rng or _JITTER
        now = self.clock.now
        yield "retry: 3000\n: connected\n\n"
        if self.draining.is_set():
            self.counts["drained"] += 1
            yield reconnect_hint(rng)
            return
        sent = last_event_id.strip() if last_event_id else None
        beat = self._beat_here()
        beat.join()
        self.counts["open"] += 1
        hangup = closed or asyncio.get_running_loop().create_future()
        quiet_since = now()
        try:
            # The subscription holds the current state first (now, or when the first poll lands).
            async with self.hub.subscribe(account_id) as sub:
                while True:
                    if sub.empty():
                        wake = _Wait(sub, beat, hangup)
                        try:
                            await wake.future
                        finally:
                            wake.done()
                        if hangup.done():
                            return
                        if self.draining.is_set():
                            self.counts["drained"] += 1
                            yield reconnect_hint(rng)
                            return
                        if sub.empty():  # the tick
                            if now() - quiet_since >= self.heartbeat / 2:
                                quiet_since = now()
                                yield ": heartbeat\n\n"
                            continue
                    snap = sub.get_nowait()
                    if not _has(sent, snap.version):
                        sent = str(snap.version)
                        quiet_since = now()
                        yield self.event(snap, quiet_since)
        finally:
            self.counts["open"] -= 1
            beat.leave()

    def event(self, snap: Snapshot, now: float) -> str:
        """The SSE event for a snapshot: its view is made once per change (the snapshot hands the
        same one to every viewer for :data:`FRESH_SECONDS`), and framed once, not per viewer."""
        view = view_of(snap, now, reuse=FRESH_SECONDS)
        framed = self._framed.get(id(view))
        if framed is not None and framed[0] is view and framed[1] == snap.version:
            return framed[2]
        text = f"id: {snap.version}\ndata: {view.body.decode()}\n\n"
        self._framed[id(view)] = (view, snap.version, text)
        if len(self._framed) > FRAMED_MAX:
            del self._framed[next(iter(self._framed))]
        return text

    def _beat_here(self) -> _Beat:
        """The heartbeat of this event loop (a test may run an app in more than one)."""
        if self._beat is None or self._beat.loop is not asyncio.get_running_loop():
            self._beat = _Beat(self)
        return self._beat


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
    """The heartbeat tick and the drain, shared by every stream of a :class:`Streams`: one task,
    instead of a timer and a drain waiter per viewer.

    A waiting stream hands it its wait future (:meth:`wake_on_tick`); every tick, and the start
    of the drain, resolves them all. The task runs while some stream has joined.
    """

    def __init__(self, streams: Streams) -> None:
        self.streams = streams
        self.loop = asyncio.get_running_loop()
        self.pokes: set[asyncio.Future[None]] = set()
        self.joined = 0
        self.task: asyncio.Task[None] | None = None

    def wake_on_tick(self, future: asyncio.Future[None]) -> None:
        """Resolve ``future`` at the next tick (at once if draining has begun)."""
        if self.streams.draining.is_set():
            fanout.wake(future)
        self.pokes.add(future)

    def forget(self, future: asyncio.Future[None]) -> None:
        self.pokes.discard(future)

    def join(self) -> None:
        self.joined += 1
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="sse-heartbeat")

    def leave(self) -> None:
        self.joined -= 1
        if self.joined <= 0 and self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        streams = self.streams
        drained = asyncio.ensure_future(streams.draining.wait())
        nap: asyncio.Future[None] | None = None
        try:
            while True:
                nap = asyncio.ensure_future(streams.clock.sleep(streams.heartbeat))
                await asyncio.wait({drained, nap}, return_when=FIRST_COMPLETED)
                pokes, self.pokes = self.pokes, set()
                for future in pokes:
                    fanout.wake(future)
                if drained.done():
                    return
        finally:
            drained.cancel()
            if nap is not None:
                nap.cancel()


def _has(seen: str | None, version: int) -> bool:
    """Whether a viewer whose last event id is ``seen`` already has ``version``: the same one,
    or a slightly later one another instance sent it (never an id from far away or junk)."""
    if seen is None or not (seen.isascii() and seen.isdigit()):
        return False
    return 0 <= int(seen) - version <= AHEAD
