"""Server-Sent Events: :class:`Streams`, the app's event streams (counts, drain, framing).

Per viewer and wait a stream costs one future, which the next change, the next tick or the drain
and the hang-up all resolve: no task, queue or ``asyncio.wait`` per viewer. Each change is framed
once and the same text goes to every viewer.
"""

from __future__ import annotations

import asyncio
import random
import resource
from asyncio import FIRST_COMPLETED
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, cast

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from nowplaying.clock import Clock
from nowplaying.engine import fanout
from nowplaying.engine.fanout import Subscription
from nowplaying.engine.live import LiveHub
from nowplaying.engine.snapshot import Snapshot, view_of
from nowplaying.schema import State
from nowplaying.web.detach import Detach, detach_of
from nowplaying.web.errors import Busy

HEARTBEAT_SECONDS = 15.0
HEARTBEAT = ": heartbeat\n\n"
"""What a quiet stream sends so that proxies and readers know it is alive."""
GREETING = "retry: 3000\n: connected\n\n"
"""What every stream opens with, detached or not: reconnect after 3 s if it ends."""
RECONNECT_MS = (500, 3000)
"""The range a draining stream's ``retry:`` is drawn from, uniformly."""
SPARE_FILES = 64
"""Descriptors kept for everything that is not an event stream (the listener, the store,
Spotify connections, other requests, the 503s themselves)."""
AHEAD_MS = 60_000
"""A ``Last-Event-ID`` ahead of this instance's state, and no further ahead of the clock (ids are
at least the clock in ms) than this, came from a quicker instance (pub/sub has not brought the
change here yet) or one whose clock is a little ahead: the viewer has the state already. One
further ahead is junk, or from a clock far off: it gets the state."""
MAX_ID_DIGITS = 20
"""A ``Last-Event-ID`` longer than this is junk, never parsed (an id is a 64-bit version; Python
refuses to parse more than 4,300 digits at all)."""
FRESH_SECONDS = 1.0
"""How long one view of a snapshot is handed out to event streams: every viewer of a change gets
the same text; a viewer connecting later gets progress measured again (``at`` says when it
holds)."""
MAX_BUFFERED = 256 * 1024
"""A detached viewer with this many bytes it has not read is cut off (it reconnects and gets the
latest state): a reader that stopped must not grow the process."""
WRITE_SECONDS = 30.0
"""A detached viewer that has taken nothing of what waits for it this long is cut off too (the
connection guard's write deadline, ``NOWPLAYING_WRITE_SECONDS``, for streams it no longer
sees); checked at each write, so within a heartbeat of it."""
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
    the drain with a reconnect hint), ``stalled`` (detached viewers cut off for not reading).
    After :meth:`drain` every open stream, and every one opened later, ends with a ``retry:``
    drawn from :data:`RECONNECT_MS`, so a thousand viewers do not all come back in the same
    instant.
    """

    def __init__(
        self,
        hub: LiveHub,
        clock: Clock,
        *,
        heartbeat: float = HEARTBEAT_SECONDS,
        on_viewers: Callable[[int], None] | None = None,
        write_seconds: float = WRITE_SECONDS,
        on_stalled: Callable[[], None] | None = None,
    ):
        self.hub = hub
        self.clock = clock
        self.heartbeat = heartbeat
        self.write_seconds = write_seconds
        self.on_stalled = on_stalled
        """Told when a detached viewer is cut off for not reading (a metric)."""
        self.counts: Counter[str] = Counter()
        self.draining = asyncio.Event()
        """Set when the server begins to shut down."""
        self._beat: _Beat | None = None
        self._framed: dict[int, tuple[State, int, str]] = {}
        """The event text of the last few views (by the view's identity, and the version)."""
        self._groups: dict[str, _Group] = {}
        """The detached viewers of each account."""
        self.on_viewers = on_viewers
        """Told +1 / -1 as detached viewers come and go (the open-streams gauge, which the edge
        keeps for the streams served the ASGI way)."""

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

        def stream(
            closed: asyncio.Future[Any], sent: str | None, greeted: bool
        ) -> AsyncGenerator[str, None]:
            return self.stream(account_id, last_event_id=sent, closed=closed, greet=not greeted)

        async def detached(send: Send, detach: Detach) -> tuple[bool, str | None]:
            return await self.detached(account_id, last_event_id, send, detach)

        return EventStream(stream, headers, detached, last_event_id)

    async def detached(
        self, account_id: str, last_event_id: str | None, send: Send, detach: Detach
    ) -> tuple[bool, str | None]:
        """Greet a new viewer, send it the current state, and detach its connection into the
        account's group; whether it was detached, and the last event id it has (the response
        goes on the ASGI way, without greeting it again, when it could not be)."""
        await send(_body(GREETING))
        if self.draining.is_set():
            self.counts["drained"] += 1
            await send(_body(reconnect_hint(_JITTER)))
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return True, None
        group = self._groups.get(account_id)
        if group is None:
            group = self._groups[account_id] = _Group(self, account_id)
        sent = last_event_id.strip() if last_event_id else None
        latest = group.latest
        if latest is not None and not has_version(sent, latest.version, self.clock.now()):
            sent = str(latest.version)
            await send(_body(self.event(latest, self.clock.now())))
        viewer = _Viewer(group, sent)
        lost = detach(viewer)
        if lost is None:
            return False, sent
        viewer.lost = lost
        group.join(viewer)
        return True, sent

    async def stream(
        self,
        account_id: str,
        *,
        last_event_id: str | None = None,
        rng: random.Random | None = None,
        closed: asyncio.Future[Any] | None = None,
        greet: bool = True,
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
        if greet:
            yield GREETING
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
                                yield HEARTBEAT
                            continue
                    snap = sub.get_nowait()
                    if not has_version(sent, snap.version, now()):
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
        stream: Callable[[asyncio.Future[Any], str | None, bool], AsyncGenerator[str, None]],
        headers: dict[str, str],
        detached: Callable[[Send, Detach], Awaitable[tuple[bool, str | None]]] | None = None,
        last_event_id: str | None = None,
    ) -> None:
        self.status_code = 200
        self.background = None
        self._stream = stream
        self._detached = detached
        self._sent = last_event_id
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        self.raw_headers = []  # this response lives as long as its viewer: let them go
        detach = detach_of(scope)
        greeted = False
        if detach is not None and self._detached is not None:
            done, self._sent = await self._detached(send, detach)
            if done:
                return
            greeted = True
        closed = asyncio.ensure_future(_disconnected(receive))
        stream = self._stream(closed, self._sent, greeted)
        try:
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


def _body(text: str) -> Message:
    return {"type": "http.response.body", "body": text.encode(), "more_body": True}


def _chunk(text: str) -> bytes:
    """``text`` as one HTTP/1.1 chunk, the way uvicorn frames a body part."""
    body = text.encode()
    return b"%x\r\n%s\r\n" % (len(body), body)


_NOTHING = -(1 << 62)
"""The version a viewer without a usable ``Last-Event-ID`` has (none is near it)."""


def _version_of(seen: str | None) -> int:
    """A ``Last-Event-ID`` as a version (:data:`_NOTHING`: none, or junk), read once per viewer
    so that a change costs each viewer two integer comparisons, not a parse (see
    :func:`has_version`)."""
    if seen is None or not (seen.isascii() and seen.isdigit()) or len(seen) > MAX_ID_DIGITS:
        return _NOTHING
    return int(seen)


_HEARTBEAT_CHUNK = _chunk(HEARTBEAT)


class _Viewer(asyncio.Protocol):
    """A detached viewer: its transport, the version it has, and its group."""

    __slots__ = ("group", "lost", "pending", "seen", "stalled_at", "transport")

    def __init__(self, group: _Group, sent: str | None) -> None:
        self.group = group
        self.seen = _version_of(sent)
        """The version it has (its ``Last-Event-ID``, then each one written to it)."""
        self.lost: Callable[[Exception | None], None] | None = None
        self.transport: asyncio.Transport | None = None
        self.pending = 0
        self.stalled_at: float | None = None
        """Since when bytes have waited for the viewer with none taken."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        """A viewer has nothing more to say; whatever it sends is ignored."""

    def connection_lost(self, exc: Exception | None) -> None:
        self.group.leave(self)
        if self.lost is not None:
            self.lost(exc)

    def has(self, version: int, now: float) -> bool:
        """Whether it has ``version`` already at ``now`` (:func:`has_version`, on the parsed
        id)."""
        return version <= self.seen <= _furthest(version, now)

    def write(self, chunk: bytes) -> None:
        """Write ``chunk`` unless the viewer stopped reading (then cut it off). The usual case,
        nothing waiting in its buffer, costs two calls on the transport before the write."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        pending = transport.get_write_buffer_size()
        if pending:
            if pending > MAX_BUFFERED or self._stalled(pending):
                transport.abort()  # stopped reading: it comes back for the latest state
                streams = self.group.streams
                streams.counts["stalled"] += 1
                if streams.on_stalled is not None:
                    streams.on_stalled()
                return
        elif self.stalled_at is not None:  # it took everything: progress
            self.pending, self.stalled_at = 0, None
        transport.write(chunk)

    def _stalled(self, pending: int) -> bool:
        """Whether bytes (``pending`` > 0) have waited for the viewer the write deadline with
        none taken."""
        streams = self.group.streams
        if pending < self.pending or self.stalled_at is None:  # progress, or the first wait
            self.pending = pending
            self.stalled_at = streams.clock.now()
            return False
        self.pending = pending
        return streams.clock.now() - self.stalled_at >= streams.write_seconds


class _Group:
    """One account's detached viewers and the one task that writes to all of them: every change
    (framed once), the heartbeat when the group has been quiet for half of one, and on the drain
    a jittered ``retry:`` each before their connections close."""

    def __init__(self, streams: Streams, account_id: str) -> None:
        self.streams, self.account_id = streams, account_id
        self.viewers: set[_Viewer] = set()
        self.latest: Snapshot | None = None
        self.task: asyncio.Task[None] | None = None
        self.emptied: asyncio.Future[None] | None = None

    def join(self, viewer: _Viewer) -> None:
        self.viewers.add(viewer)
        self.streams.counts["open"] += 1
        if self.streams.on_viewers is not None:
            self.streams.on_viewers(1)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._pump(), name=f"sse-group:{self.account_id}")
        elif self.latest is not None and not viewer.has(
            self.latest.version, self.streams.clock.now()
        ):
            self._send(self.latest)  # a change that came while it was being greeted

    def leave(self, viewer: _Viewer) -> None:
        if viewer not in self.viewers:
            return
        self.viewers.discard(viewer)
        self.streams.counts["open"] -= 1
        if self.streams.on_viewers is not None:
            self.streams.on_viewers(-1)
        if not self.viewers:
            if self.streams._groups.get(self.account_id) is self:
                del self.streams._groups[self.account_id]
            if self.emptied is not None:
                fanout.wake(self.emptied)

    def _send(self, snap: Snapshot) -> None:
        """One change to every viewer that lacks it: framed and chunked once, the same bytes
        written to each transport in this one loop (no task, future or parse per viewer)."""
        version = snap.version
        now = self.streams.clock.now()
        chunk = _chunk(self.streams.event(snap, now))
        ahead = _furthest(version, now)  # has_version's bound, once a change
        for viewer in tuple(self.viewers):
            if not version <= viewer.seen <= ahead:  # viewer.has(version, now), inlined
                viewer.seen = version
                viewer.write(chunk)

    async def _pump(self) -> None:
        streams = self.streams
        now = streams.clock.now
        beat = streams._beat_here()
        beat.join()
        self.emptied = beat.loop.create_future()
        quiet_since = now()
        try:
            async with streams.hub.subscribe(self.account_id) as sub:
                while self.viewers:
                    if sub.empty():
                        wake = _Wait(sub, beat, self.emptied)
                        try:
                            await wake.future
                        finally:
                            wake.done()
                        if not self.viewers:
                            return
                        if streams.draining.is_set():
                            self._end_all()
                            return
                        if sub.empty():  # the tick
                            if now() - quiet_since >= streams.heartbeat / 2:
                                quiet_since = now()
                                for viewer in tuple(self.viewers):
                                    viewer.write(_HEARTBEAT_CHUNK)
                            continue
                    self.latest = sub.get_nowait()
                    quiet_since = now()
                    self._send(self.latest)
        finally:
            beat.leave()

    def _end_all(self) -> None:
        """The drain: each viewer's last words (a jittered retry), then its connection closes."""
        for viewer in list(self.viewers):
            self.streams.counts["drained"] += 1
            viewer.write(_chunk(reconnect_hint(_JITTER)) + b"0\r\n\r\n")
            if viewer.transport is not None:
                viewer.transport.close()


def has_version(seen: str | None, version: int, now: float) -> bool:
    """Whether a viewer whose last event id is ``seen`` already has ``version`` at ``now``: the
    same one, or a later one another instance sent it (never junk, nor an id further ahead of
    the clock than :data:`AHEAD_MS`). Ids from before ids kept to the clock (one more than the
    last, from the clock in ms when the widget was first watched) are lower than the clock:
    such a viewer gets the state once, and nothing is skipped."""
    return version <= _version_of(seen) <= _furthest(version, now)


def _furthest(version: int, now: float) -> int:
    """The furthest-ahead id a viewer that has ``version`` may hold at ``now``."""
    return max(version, int(now * 1000)) + AHEAD_MS
