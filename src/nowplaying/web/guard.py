"""The connection guard: request deadlines, per-address caps and a descriptor reserve.

uvicorn closes idle keep-alive connections and nothing else: a client that sends its headers a
byte at a time, never finishes a body or stops reading holds its socket until the process ends,
and one address holding enough of them exhausts the descriptors for everybody. The guard works
below the ASGI app, where such a request is never seen, and relies only on what uvicorn's h11 and
httptools protocols share (``cycle``, ``more_body``, ``response_complete``, flow control). A
writer the transport paused that makes no progress for ``write_seconds`` is a stalled reader. A
peer that ``NOWPLAYING_TRUSTED_PROXIES`` names carries many clients: its connections are not
capped (the deadlines still apply); instead each request it forwards counts, from the moment its
head is parsed, against the client its ``X-Forwarded-For`` names (read by the trusted-proxy rules,
as the rate limiter reads it), and a client over its caps gets a 429 on that request while the
proxy's connection and its other clients are served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string
from uvicorn.middleware.proxy_headers import _TrustedHosts

from nowplaying.config import Settings

log = logging.getLogger(__name__)

PRESSURE_SHARE = 4
"""Under descriptor pressure, an address already holding this many connections gets no more."""
BASELINE_SPARE = 64
"""Descriptors first assumed in use besides the connections (the store, Redis, the upstream
pool): measured at start, plus this; counted again when the estimate nears the limit."""
LOG_SECONDS = 1.0
"""The guard says what it closed at most this often per reason (the count says the rest)."""
RECOUNT_SECONDS = 1.0
"""Near the limit, the open descriptors are counted at most this often."""

REASONS = (
    "header_deadline",
    "body_deadline",
    "write_deadline",
    "address_cap",
    "reserve",
    "forwarded_cap",
)
"""Why the guard closed a connection (the metric's label values); ``forwarded_cap``: a request a
trusted proxy forwarded was refused with a 429 (its connection kept)."""
FORWARDED_REFUSAL = (
    b'{"error":"too_many_requests","message":"Too many open requests from this address;'
    b' finish or close some first."}'
)


@dataclass(frozen=True, slots=True)
class Limits:
    """The guard's deadlines (seconds) and caps (connections per address, descriptors kept)."""

    header_seconds: float = 10.0
    body_seconds: float = 30.0
    write_seconds: float = 30.0
    connections: int = 256
    unfinished: int = 32
    reserve: int = 32
    send_buffer: int = 64 * 1024
    """Bytes of answers the kernel holds per connection (``SO_SNDBUF``; Linux doubles it; 0:
    its own autotuning, up to 4 MB here). A reader that takes nothing makes the server produce
    this much per connection before its writer pauses: with 50 such readers pipelining 48 KB
    answers, autotuning meant about 4,000 answers through the whole stack in a burst."""
    unfinished_after: float = 1.0
    """Seconds a connection may wait for its request head before it counts as unfinished: a
    burst of connections that send their heads at once (a page opening many streams, a NAT) is
    not an attack, a connection still without its head a second later is."""


def limits_of(settings: Settings) -> Limits:
    """The guard's limits as configured."""
    return Limits(
        header_seconds=settings.nowplaying_header_seconds,
        body_seconds=settings.nowplaying_body_seconds,
        write_seconds=settings.nowplaying_write_seconds,
        connections=settings.nowplaying_connections_per_address,
        unfinished=settings.nowplaying_unfinished_per_address,
        reserve=settings.nowplaying_reserved_files,
        send_buffer=settings.nowplaying_send_buffer_bytes,
    )


def protocol_class(http: str | type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class for its ``http`` option (``auto``, ``h11``, ``httptools``)."""
    if isinstance(http, str):
        found: type[asyncio.Protocol] = import_from_string(HTTP_PROTOCOLS[http])
        return found
    return http


def _open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux: assume a small process
        return 32


class Guard:
    """Shared by every connection of one server: per-address counts, the descriptor budget, and
    how many connections were closed for which reason."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        trusted_proxies: Collection[str] = (),
        files_limit: int | None = None,
        baseline: int | None = None,
        count: Callable[[], int] | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.trusted = _TrustedHosts(list(trusted_proxies)) if trusted_proxies else None
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.files_limit = files_limit if files_limit is not None else soft
        self._count = count if count is not None else _open_descriptors
        if baseline is None:
            baseline = self._count() + BASELINE_SPARE
        self.baseline = baseline
        """Descriptors in use that are not connections (an estimate, counted near the limit)."""
        self._counted = -RECOUNT_SECONDS
        self.open = 0
        self.connections: Counter[str] = Counter()
        self.unfinished: Counter[str] = Counter()
        self.counts: Counter[str] = Counter(dict.fromkeys(REASONS, 0))
        self._logged: dict[str, float] = {}
        self._told: Counter[str] = Counter()

    def protocol(self, base: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
        """``base`` (a uvicorn HTTP protocol class) under this guard."""
        return type(f"Guarded{base.__name__}", (_Guarded, base), {"guard": self})

    def capped(self, address: str) -> bool:
        """Whether ``address``'s connections count against the per-address caps ("": unknown)."""
        return bool(address) and (self.trusted is None or address not in self.trusted)

    def trusts(self, address: str) -> bool:
        """Whether ``address`` is a trusted proxy's (its forwarded headers are believed)."""
        return bool(address) and self.trusted is not None and address in self.trusted

    def over_caps(self, client: str) -> bool:
        """Whether a forwarded ``client`` holds as many requests as its caps allow (its next
        one is refused with a 429)."""
        limits = self.limits
        return (
            self.connections[client] >= limits.connections
            or self.unfinished[client] >= limits.unfinished
        )

    def forwarded_client(self, headers: list[tuple[bytes, bytes]]) -> str:
        """The client a trusted proxy's request is from: its ``X-Forwarded-For`` read by the
        trusted-proxy rules (the rate limiter's address); "" when it names none."""
        if self.trusted is None:
            return ""
        values = [value for name, value in headers if name == b"x-forwarded-for"]
        if not values:
            return ""
        host, _ = self.trusted.get_trusted_client_address(b", ".join(values).decode("latin1"))
        return host

    def refusal(self, address: str) -> str | None:
        """Why a new connection from ``address`` is closed at once, or None to admit it."""
        held = self.connections[address]
        if held >= self.limits.connections or self.unfinished[address] >= self.limits.unfinished:
            return "address_cap"
        if held >= PRESSURE_SHARE and self._pressed():
            return "reserve"
        return None

    def _pressed(self) -> bool:
        """Whether the open descriptors have reached the limit less the reserve."""
        threshold = self.files_limit - self.limits.reserve
        if self.baseline + self.open < threshold:
            return False
        now = time.monotonic()
        if now - self._counted >= RECOUNT_SECONDS:  # the estimate says so: count them
            self._counted = now
            self.baseline = max(0, self._count() - self.open)
        return self.baseline + self.open >= threshold

    def closed(self, reason: str, address: str) -> None:
        """Count a closing; say so at most once per :data:`LOG_SECONDS` per reason, with the
        count since. Under attack this runs thousands of times a second, on the loop that
        serves everyone: a log record each time (even one the log's rate limit then drops)
        was a seventh of the loop's time."""
        self.counts[reason] += 1
        now = time.monotonic()
        if now - self._logged.get(reason, -LOG_SECONDS) < LOG_SECONDS:
            return
        self._logged[reason] = now
        held = self.counts[reason] - self._told[reason]
        self._told[reason] = self.counts[reason]
        log.warning(
            "closed %d connection(s), the last from %s: %s (%d so far)",
            held,
            address or "?",
            reason.replace("_", " "),
            self.counts[reason],
        )


class _Guarded(asyncio.Protocol):
    """The guard's half of a guarded protocol class (the other half is uvicorn's)."""

    guard: Guard
    app: ASGIApp  # uvicorn's (the app the server runs)
    transport: asyncio.Transport
    cycle: Any  # uvicorn's RequestResponseCycle (h11's or httptools')

    _address = ""
    _capped = False
    _counted_unfinished = False
    _seen: object = None
    _head: asyncio.TimerHandle | None = None
    _late: asyncio.TimerHandle | None = None
    _body: asyncio.TimerHandle | None = None
    _write: asyncio.TimerHandle | None = None
    _pending = 0
    _held = b""
    """Bytes of the next request(s), received while one is being answered."""
    _holding = False
    """Whether the guard paused reading because it holds bytes."""
    _forwarded = ""
    """The client the current request is forwarded for (a trusted proxy's connection only)."""
    served = 0
    """Requests the fast path (``web/fast.py``) answered on this connection, if it is there."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # uvicorn's half is set up in connection_made, once the guard admits the connection:
        # under attack most are refused at once, and that set-up (a parser, loggers looked up,
        # a deque) was a tenth of the loop's time.
        self._deferred: tuple[tuple[Any, ...], dict[str, Any]] | None = (args, kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self.guard
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self._capped = guard.capped(self._address)
        if self._capped:
            reason = guard.refusal(self._address)
            if reason is not None:
                # Refused before uvicorn's half hears of it: under attack this is most
                # connections, and nothing of the server's own set-up is spent on them.
                self._seen = _REFUSED
                guard.closed(reason, self._address)
                transport.abort()  # type: ignore[attr-defined]
                return
            guard.connections[self._address] += 1
        if self._deferred is not None:
            args, kwargs = self._deferred
            self._deferred = None
            super().__init__(*args, **kwargs)
        super().connection_made(transport)
        if not self._capped and self._address and guard.trusted is not None:
            self._count_forwarded()
        guard.open += 1
        # Pause the writer as soon as the kernel holds back a byte: a pause is a full buffer.
        self.transport.set_write_buffer_limits(high=0)
        if guard.limits.send_buffer:
            _send_buffer(transport, guard.limits.send_buffer)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._seen is _REFUSED:  # uvicorn's half never saw this connection
            self._seen = _LOST
            return
        for timer in (self._head, self._late, self._body, self._write):
            if timer is not None:
                timer.cancel()
        self._head = self._late = self._body = self._write = None
        self._held = b""
        if self._seen is not _LOST:
            self._unfinished(False)
            self._release_forwarded()
            if self._capped:
                left = self.guard.connections[self._address] - 1
                if left > 0:
                    self.guard.connections[self._address] = left
                else:
                    del self.guard.connections[self._address]
            self.guard.open -= 1
        self._seen = _LOST
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Hand uvicorn's half the bytes one request head at a time, and none while a request
        fully received is still being answered: those are held (reading paused) until it is.
        httptools parses everything it is given, so 20 KB of pipelined GETs from a reader that
        takes nothing became 400 request cycles at once; 256 KB of them, 15 MB of memory."""
        if self._held:
            data, self._held = self._held + data, b""
        start = 0
        while start < len(data):
            if self.transport.is_closing():  # nothing more is answered
                return
            if self._answering():
                self._held = data[start:]
                if not self._holding:
                    self._holding = True
                    self.transport.pause_reading()
                return
            end = data.find(b"\r\n\r\n", start)
            stop = len(data) if end < 0 else end + 4
            self._take(data[start:stop] if start or stop < len(data) else data)
            start = stop
        if self._holding:
            self._holding = False
            if not self.flow.read_paused:  # type: ignore[attr-defined]
                self.transport.resume_reading()  # unless uvicorn's half wants it paused

    def _answering(self) -> bool:
        """Whether a request has fully arrived and its answer is not complete: what comes now
        is the next request (pipelined)."""
        cycle = self.cycle
        return cycle is not None and not cycle.more_body and not cycle.response_complete

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if self._held:  # the next request's turn, once this send is over
            asyncio.get_running_loop().call_soon(self._release)

    def _release(self) -> None:
        if self._held and self._seen is not _LOST:
            self.data_received(b"")

    def _take(self, data: bytes) -> None:
        served = self.served
        super().data_received(data)
        if self.served != served:  # the fast path answered: the next head has its deadline
            self._cancel_head()
            self._unfinished(False)
        cycle = self.cycle
        if cycle is not None and cycle is not self._seen:  # a request's headers arrived
            self._seen = cycle
            self._cancel_head()
            if cycle.more_body and self._body is None:
                loop = asyncio.get_running_loop()
                self._body = loop.call_later(self.guard.limits.body_seconds, self._body_late)
        if self._body is not None and not (cycle.more_body and not cycle.response_complete):
            self._body.cancel()
            self._body = None
        if self._waiting_for_head():
            self._await_head()
        else:
            self._unfinished(self._body is not None)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write is None:
            self._pending = self.transport.get_write_buffer_size()
            loop = asyncio.get_running_loop()
            self._write = loop.call_later(self.guard.limits.write_seconds, self._write_late)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write is not None:
            self._write.cancel()
            self._write = None

    def _waiting_for_head(self) -> bool:
        cycle = self.cycle
        return cycle is None or (cycle.response_complete and cycle is self._seen)

    def _await_head(self) -> None:
        if self._head is None:
            loop = asyncio.get_running_loop()
            limits = self.guard.limits
            self._head = loop.call_later(limits.header_seconds, self._head_late)
            self._late = loop.call_later(limits.unfinished_after, self._still_waiting)

    def _still_waiting(self) -> None:
        self._late = None
        if self._waiting_for_head():
            self._unfinished(True)

    def _cancel_head(self) -> None:
        for timer in (self._head, self._late):
            if timer is not None:
                timer.cancel()
        self._head = self._late = None

    def _count_forwarded(self) -> None:
        """Wrap the app so each request this trusted proxy forwards counts against its client
        from the moment its head is parsed (the app is called then), until its response is
        over or, for a detached event stream, its connection is."""
        inner, guard = self.app, self.guard

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            client = guard.forwarded_client(scope["headers"]) if scope["type"] == "http" else ""
            if not client:
                await inner(scope, receive, send)
                return
            if guard.over_caps(client):
                guard.counts["forwarded_cap"] += 1
                log.warning("refused a request forwarded for %s: over its caps", client)
                await _too_many(send)
                return
            self._forwarded = client
            guard.connections[client] += 1
            self._unfinished(self._body is not None)
            try:
                await inner(scope, receive, send)
            finally:
                if self.transport.get_protocol() is self:  # not detached: the request is over
                    self._release_forwarded()

        self.app = app

    def _release_forwarded(self) -> None:
        client = self._forwarded
        if not client:
            return
        self._unfinished(False)
        self._forwarded = ""
        left = self.guard.connections[client] - 1
        if left > 0:
            self.guard.connections[client] = left
        else:
            del self.guard.connections[client]

    def _unfinished(self, now: bool) -> None:
        key = self._forwarded or (self._address if self._capped else "")
        if now == self._counted_unfinished or not key:
            return
        self._counted_unfinished = now
        self.guard.unfinished[key] += 1 if now else -1
        if self.guard.unfinished[key] <= 0:
            del self.guard.unfinished[key]

    def _close(self, reason: str, *, abort: bool = False) -> None:
        if self.transport.is_closing() and not abort:  # a closing transport still waits to write
            return
        self.guard.closed(reason, self._address)
        if abort:
            self.transport.abort()
        else:
            self.transport.close()

    def _head_late(self) -> None:
        self._head = None
        if self._waiting_for_head():
            self._close("header_deadline")

    def _body_late(self) -> None:
        self._body = None
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.response_complete:
            self._close("body_deadline")

    def _write_late(self) -> None:
        self._write = None
        pending = self.transport.get_write_buffer_size()
        if pending and pending < self._pending:  # the reader took some: give it another period
            self._pending = pending
            loop = asyncio.get_running_loop()
            self._write = loop.call_later(self.guard.limits.write_seconds, self._write_late)
        elif pending:
            self._close("write_deadline", abort=True)


def _send_buffer(transport: asyncio.BaseTransport, size: int) -> None:
    """Hold the kernel's send buffer of ``transport``'s socket to ``size`` bytes."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # a socket type without one: the kernel's default
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


async def _too_many(send: Send) -> None:
    """The 429 a forwarded client over its caps gets (before the app: its own error shape)."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(FORWARDED_REFUSAL)).encode()),
        (b"retry-after", b"1"),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": FORWARDED_REFUSAL})


_REFUSED = object()
"""``_seen`` of a connection refused in :meth:`_Guarded.connection_made`: nothing counted."""
_LOST = object()
"""``_seen`` once the connection is gone, so its counts are given back once."""
