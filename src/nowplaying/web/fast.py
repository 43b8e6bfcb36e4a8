"""The fast path: the hot public routes answered from pre-encoded bytes, below the ASGI app.

Bare Starlette on httptools reaches about a quarter of what nginx serves from a file, so no
answer through the ASGI stack can do much better. A handler that can tell how long its answer
holds gives it a :class:`Ticket` (:func:`hold`); the edge records the answer as sent (status
line, every header, body) under the request's :func:`key_of`; and the protocol answers the
next identical request on the connection straight from those bytes, with a fresh ``Date`` and
request id, while the ticket holds. What the edge does for every request is done here too:
the per-address rate limit (a refusal goes the normal way, which answers the 429), the header
size limit, the latency histogram and the access line; the ``Host`` is part of the key, so only
a host the edge let through ever matches. Anything unusual (another header that matters, a
body, a parser with half a request, a paused writer) goes the normal way.

Behind a proxy that ``NOWPLAYING_TRUSTED_PROXIES`` names, forwarded requests are answered too,
read as the normal path reads them: the scheme ``X-Forwarded-Proto`` gives (as
``ProxyHeadersMiddleware`` takes it) is part of the key, and so are ``X-Forwarded-Host`` and
``Forwarded`` as sent (nothing reads them; an answer is never assumed not to depend on them);
the rate limit, the guard's caps and the access line use the client ``X-Forwarded-For`` names
(:meth:`.guard.Guard.forwarded_client`). From any other peer a forwarded header sends the
request the normal way, as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import h11
from starlette.types import Message, Scope, Send
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES

from nowplaying.clock import Clock
from nowplaying.ops.logs import REQUEST_ID_NAME, enter_request, leave_request
from nowplaying.web.detach import detachable
from nowplaying.web.guard import Guard
from nowplaying.web.limits import MAX_HEADERS, Buckets
from nowplaying.web.metrics import Latency
from nowplaying.web.security import access_log, log_access_line

TICKET = "nowplaying.fast"
"""The scope key a handler sets (:func:`hold`) when its answer may be served again."""
REUSE_SECONDS = 1.0
"""How long a JSON answer is served again: its ``at`` says when its progress held, and the
widget moves on from there (as an event stream's view, reused for a second)."""
HTTPTOOLS = "uvicorn.protocols.http.httptools_impl"
H11 = "uvicorn.protocols.http.h11_impl"
MAX_ANSWERS = 1024
"""Answers kept at most (bodies are shared: the card cache's and a view's bytes)."""

Key = tuple[bytes, bytes, bytes, bytes | None, bytes | None, str, bytes | None, bytes | None]
"""(method, request target as sent, ``Host``, ``If-None-Match``, ``Cookie`` where it matters,
the request's scheme, ``X-Forwarded-Host`` and ``Forwarded`` as sent)."""

_HEAD = re.compile(
    rb"(?:GET|HEAD) [\x21-\x7e]+ HTTP/1\.1"
    rb"(?:\r\n[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*)*"
)
"""A request head the fast path reads; anything else (HTTP/1.0, folded or odd lines) is the
parser's."""
_OTHERS = frozenset(
    (
        REQUEST_ID_NAME,
        b"content-length",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
    )
)
"""Request headers that change what the edge or the server does: such a request goes the
normal way."""
FORWARDED = frozenset((b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"))
"""The headers a proxy adds: a request with one goes the normal way unless it comes from a
trusted proxy."""
_SINGLE = frozenset((b"host", b"if-none-match", b"cookie", b"x-forwarded-host", b"forwarded"))
"""Headers in the key: a request that repeats one goes the normal way."""
SCHEMES = frozenset(("http", "https", "ws", "wss"))
"""The ``X-Forwarded-Proto`` values ``ProxyHeadersMiddleware`` takes."""


@dataclass(frozen=True, slots=True)
class Ticket:
    """How long an answer may be served again: until the clock reaches ``until``, and while
    ``holds()`` (which also does what the request would have done, e.g. keep a poller going)."""

    until: float
    holds: Callable[[], bool]


def hold(scope: Scope, until: float, holds: Callable[[], bool]) -> None:
    """Offer the answer about to be sent for the fast path, until ``until`` while ``holds()``."""
    scope[TICKET] = Ticket(until, holds)


def forwarded_scheme(headers: Iterable[tuple[bytes, bytes]], own: str) -> str:
    """The scheme of a trusted proxy's request as ``ProxyHeadersMiddleware`` gives it to the
    app: its (last) ``X-Forwarded-Proto`` when that is one it takes, else ``own`` (the
    connection's)."""
    proto = None
    for name, value in headers:
        if name == b"x-forwarded-proto":
            proto = value
    if proto is None:
        return own
    sent = proto.decode("latin-1").strip()
    return sent if sent in SCHEMES else own


def key_of(
    method: bytes,
    target: bytes,
    headers: Iterable[tuple[bytes, bytes]],
    scheme: str = "http",
    *,
    forwarded: bool = False,
) -> Key | None:
    """What an answer is recorded and found under; None for a request that goes the normal way.
    ``headers`` as the server hands them to the app (names in lower case, values stripped);
    ``scheme`` as the app sees it (a trusted proxy's: :func:`forwarded_scheme`). Forwarded
    headers take the request the normal way unless ``forwarded`` (a trusted proxy's request, or
    one the app has answered)."""
    if method not in (b"GET", b"HEAD"):
        return None
    single: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in _SINGLE:
            if name in single:
                return None
            single[name] = value
        elif name == b"connection":
            if value.lower() != b"keep-alive":
                return None
        elif name in _OTHERS or (name in FORWARDED and not forwarded):
            return None
    host = single.get(b"host")
    if host is None:
        return None
    # The public routes read no cookie: a visitor's cookies for the site do not split them.
    cookie = None if target.startswith(b"/p/") else single.get(b"cookie")
    etags = single.get(b"if-none-match")
    return (
        method,
        target,
        host,
        etags,
        cookie,
        scheme,
        single.get(b"x-forwarded-host"),
        single.get(b"forwarded"),
    )


@dataclass(frozen=True, slots=True)
class _Answer:
    status_line: bytes
    headers: bytes
    """Every header after the server's own (``Date``) and before the request id, encoded."""
    body: bytes
    ticket: Ticket
    path: str
    route: str
    method: str
    status: int


class FastAnswers:
    """The recorded answers of one app, and the fast path's copy of the edge's checks."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.answers: dict[Key, _Answer] = {}
        self.counts: Counter[str] = Counter()
        """Answers served by the fast path, by route template."""
        self.buckets: Buckets | None = None
        self.latency: Latency | None = None
        self.max_headers = MAX_HEADERS
        self.guard: Guard | None = None
        """The server's guard: which peers are trusted proxies, and the forwarded clients'
        caps (:func:`server_protocol` sets it); without one, forwarded requests go the normal
        way."""
        self._status_lines: dict[int, bytes] | None = None
        """The server's status lines; None until a protocol that can serve fast is made."""
        self._dates: tuple[object, bytes] = (None, b"")

    @property
    def enabled(self) -> bool:
        return self._status_lines is not None

    def bind(self, buckets: Buckets, latency: Latency | None, max_headers: int) -> None:
        """The edge's rate limits, latency histogram and header limit (the edge calls this)."""
        self.buckets, self.latency, self.max_headers = buckets, latency, max_headers

    def protocol(self, base: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
        """``base`` (uvicorn's HTTP protocol class) with the fast path in front of its parser.
        uvicorn's httptools and h11 protocols write a response the same way (status line, the
        server's headers, the app's in order); another class is returned as it is."""
        if base.__module__ not in (HTTPTOOLS, H11):
            return base
        self._status_lines = {
            code: b"HTTP/1.1 %d %s\r\n" % (code, phrase) for code, phrase in STATUS_PHRASES.items()
        }
        mixin = _FastHttptools if base.__module__ == HTTPTOOLS else _FastH11
        return type(f"Fast{base.__name__}", (mixin, base), {"fast": self})

    def recording(self, scope: Scope, send: Send) -> Send:
        """``send`` keeping the answer to a GET or HEAD whose handler offered it (:func:`hold`),
        as the edge sends it (the edge wraps its ``send`` with this)."""
        if scope["method"] not in ("GET", "HEAD") or not self.enabled:
            return send
        start: list[Message] = []

        async def send_recorded(message: Message) -> None:
            if message["type"] == "http.response.start":
                if TICKET in scope:
                    start.append(message)
            elif start and not message.get("more_body", False):
                self.record(
                    scope, start[0]["status"], start[0]["headers"], message.get("body", b"")
                )
            await send(message)

        return send_recorded

    def record(
        self, scope: Scope, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """Keep an answer as the server will encode it."""
        ticket: Ticket = scope[TICKET]
        lines = self._status_lines
        if lines is None or status not in (200, 304) or not headers:
            return
        *kept, last = headers
        if last[0] != REQUEST_ID_NAME:
            return
        names = {name.lower() for name, _ in kept}
        if (status == 200 and b"content-length" not in names) or names & {
            b"connection",
            b"transfer-encoding",
            b"set-cookie",
        }:
            return  # uvicorn would add or act on a framing header; a cookie is one client's
        query = scope["query_string"]
        target = scope["raw_path"] + (b"?" + query if query else b"")
        # The scheme as the app saw it (a trusted proxy's X-Forwarded-Proto applied, or not).
        key = key_of(
            scope["method"].encode(),
            target,
            scope["headers"],
            scope.get("scheme", "http"),
            forwarded=True,
        )
        if key is None or (key[3] is not None and status != 304):
            return  # an If-None-Match that matched nothing is the client's to choose: not kept
        if len(self.answers) >= MAX_ANSWERS:
            self.answers.clear()
        self.answers[key] = _Answer(
            lines[status],
            b"".join(b"%s: %s\r\n" % (name.lower(), value) for name, value in kept),
            b"" if scope["method"] == "HEAD" else body,
            ticket,
            scope["path"],
            getattr(scope.get("route"), "path", "unmatched"),
            scope["method"],
            status,
        )

    def answer(self, head: bytes, proto: Any) -> bytes | None:
        """The bytes answering the request ``head`` (without its blank line), or None."""
        if not _HEAD.fullmatch(head):
            return None
        started = time.perf_counter()
        lines = head.split(b"\r\n")
        method, target, _ = lines[0].split(b" ")
        headers = []
        size = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            value = value.strip(b" \t")
            size += len(name) + len(value)
            headers.append((name.lower(), value))
        if size > self.max_headers:
            return None
        peer = proto.client
        address = str(peer[0]) if peer else "unknown"
        guard = self.guard
        trusted = guard is not None and guard.trusts(address)
        scheme = forwarded_scheme(headers, proto.scheme) if trusted else proto.scheme
        key = key_of(method, target, headers, scheme, forwarded=trusted)
        answer = self.answers.get(key) if key is not None else None
        if answer is None:
            return None
        ticket = answer.ticket
        if self.clock.now() >= ticket.until or not ticket.holds():
            self.answers.pop(key, None)  # type: ignore[arg-type]
            return None
        client = address
        if trusted and guard is not None:  # the client X-Forwarded-For names, as the app reads it
            client = guard.forwarded_client(headers) or address
            if client != address and guard.over_caps(client):
                return None  # the normal path answers the guard's 429 (and counts it)
        if self.buckets is not None and self.buckets.take(answer.path, client):
            return None  # the normal path answers the 429 (and counts it)
        rid = os.urandom(8).hex()
        self.counts[answer.route] += 1
        if self.latency is not None:
            self.latency.observe_route(answer.route, answer.method, answer.status, started)
        if access_log.isEnabledFor(logging.INFO):
            holder, token = enter_request(rid)
            log_access_line(answer.method, answer.path, answer.status, started, client)
            leave_request(holder, token)
        return b"".join(
            (
                answer.status_line,
                self._date(proto.server_state.default_headers),
                answer.headers,
                b"x-request-id: ",
                rid.encode(),
                b"\r\n\r\n",
                answer.body,
            )
        )

    def _date(self, default: list[tuple[bytes, bytes]]) -> bytes:
        """The server's own headers (``Date``), encoded once per second."""
        seen, encoded = self._dates
        if default is not seen:
            encoded = b"".join(b"%s: %s\r\n" % pair for pair in default)
            self._dates = (default, encoded)
        return encoded


class _Fast(asyncio.Protocol):
    """The fast path's half of a protocol class (the other half is uvicorn's)."""

    fast: FastAnswers
    transport: asyncio.Transport
    cycle: Any
    served = 0
    """Requests this connection had answered by the fast path (the guard watches it)."""

    def _idle(self) -> bool:
        """Whether the server holds nothing of an earlier request (so answers stay in order)."""
        cycle = self.cycle
        return not (
            (cycle is not None and not cycle.response_complete)
            or self.flow.write_paused  # type: ignore[attr-defined]
            or self.transport.is_closing()
            or self._parser_busy()
        )

    def _parser_busy(self) -> bool:
        raise NotImplementedError

    def data_received(self, data: bytes) -> None:
        if not self._idle():
            super().data_received(data)
            return
        start = served = 0
        while (end := data.find(b"\r\n\r\n", start)) >= 0:
            out = self.fast.answer(data[start:end], self)
            if out is None:
                break
            self.transport.write(out)
            served += 1
            start = end + 4
            if self.flow.write_paused:  # type: ignore[attr-defined]
                break  # a reader behind: the rest waits in uvicorn's flow control
        if served:
            self.served += served
            self.server_state.total_requests += served  # type: ignore[attr-defined]
            self._unset_keepalive_if_required()  # type: ignore[attr-defined]
        if start < len(data):
            super().data_received(data[start:] if start else data)
        elif served:  # as uvicorn does after a response: the keep-alive timeout runs again
            self.timeout_keep_alive_task = self.loop.call_later(  # type: ignore[attr-defined]
                self.timeout_keep_alive,  # type: ignore[attr-defined]
                self.timeout_keep_alive_handler,  # type: ignore[attr-defined]
            )


class _FastHttptools(_Fast):
    """httptools: busy from a message's first byte to its end, or with requests queued."""

    _parsing = False

    def on_message_begin(self) -> None:
        self._parsing = True
        super().on_message_begin()  # type: ignore[misc]

    def on_message_complete(self) -> None:
        self._parsing = False
        super().on_message_complete()  # type: ignore[misc]

    def _parser_busy(self) -> bool:
        return self._parsing or bool(self.pipeline)  # type: ignore[attr-defined]


class _FastH11(_Fast):
    """h11: busy unless both sides are idle with nothing buffered."""

    conn: h11.Connection

    def _parser_busy(self) -> bool:
        conn = self.conn
        return not (
            conn.their_state is h11.IDLE
            and conn.our_state is h11.IDLE
            and not conn.trailing_data[0]
        )


def server_protocol(
    http: type[asyncio.Protocol], guard: Guard, fast: FastAnswers | None
) -> type[asyncio.Protocol]:
    """uvicorn's protocol class ``http`` as ``nowplaying serve`` runs it: under the guard,
    detachable (event streams), with the fast path in front of the parser where it can be."""
    if fast is not None:
        fast.guard = guard
    return guard.protocol(detachable(http if fast is None else fast.protocol(http)))
