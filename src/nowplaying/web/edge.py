"""The edge: one ASGI middleware for what every request passes, in one frame and one ``send``.

Six nested middlewares cost each open event stream about 7 KB of frames and each request a
wrapper call per layer. Their order is kept: request id, size limits (431, 413), per-address rate
limits (429), the trusted ``Host`` (400), then the app with the security headers and an access
line, and the metrics. The refusals before the ``Host`` check carry only ``no-store`` and
``nosniff``, and no access line.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nowplaying.clock import Clock
from nowplaying.ops.logs import REQUEST_ID_NAME, enter_request, leave_request, request_id
from nowplaying.ops.metrics import Metrics
from nowplaying.web.errors import BadRequest, BodyTooLarge, Refusal
from nowplaying.web.fast import FastAnswers
from nowplaying.web.limits import (
    DEFAULT_RULES,
    MAX_BODY,
    MAX_HEADERS,
    REFUSED,
    TOO_LARGE,
    Buckets,
    Overflow,
    Rule,
    counted,
    too_large,
    too_many,
)
from nowplaying.web.metrics import EVENT_STREAM, Latency
from nowplaying.web.security import (
    SECURITY_NAMES,
    UNKNOWN_HOST,
    TrustedHosts,
    log_access,
    security_headers_for,
    with_security_headers,
)

_NO_STORE = {"Cache-Control": "no-store"}


def _read(
    headers: list[tuple[bytes, bytes]],
) -> tuple[int, bytes | None, bytes | None, bytes | None, bool]:
    """What the edge reads of a request's headers, in one pass: their size, ``Host``,
    ``X-Request-Id``, ``Content-Length`` (the first of each), and whether the body is chunked."""
    size = 0
    host = rid = length = None
    chunked = False
    for name, value in headers:
        size += len(name) + len(value)
        if name == b"host":
            host = value if host is None else host
        elif name == b"x-request-id":
            rid = value if rid is None else rid
        elif name == b"content-length":
            length = value if length is None else length
        elif name == b"transfer-encoding":
            chunked = True
    return size, host, rid, length, chunked


def response_headers(
    raw: Iterable[tuple[bytes, bytes]], *, secured: bool, exempt: bool, rid: bytes
) -> tuple[list[tuple[bytes, bytes]], bool]:
    """A response's headers as sent, in one pass: the app's (less any ``X-Request-Id``), the
    security headers it does not set itself when ``secured``, and this request's id; and whether
    it is an event stream (an open viewer, until it ends)."""
    kept: list[tuple[bytes, bytes]] = []
    own = False  # the app set one of the security headers: merge them one by one
    content_type: bytes | None = None
    for pair in raw:
        name = pair[0]
        if name == REQUEST_ID_NAME:
            continue
        if name in SECURITY_NAMES:
            own = True
        elif name == b"content-type" and content_type is None:
            content_type = pair[1]
        kept.append(pair)
    if secured:
        if own or exempt:
            with_security_headers(kept, exempt)
        else:  # the usual case
            kept.extend(security_headers_for(content_type))
    kept.append((REQUEST_ID_NAME, rid))
    return kept, content_type is not None and content_type.startswith(EVENT_STREAM)


def _as_sent(scope: Scope, send: Send) -> Send:
    return send


class Edge:
    """Request id, limits, rate limits, host check, security headers, access log and metrics."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        clock: Clock,
        hosts: Collection[str],
        host_exempt_paths: Collection[str] = (),
        header_exempt_prefixes: tuple[str, ...] = (),
        rules: tuple[Rule, ...] = DEFAULT_RULES,
        max_body: int = MAX_BODY,
        large_bodies: Mapping[str, int] | None = None,
        max_headers: int = MAX_HEADERS,
        observe_latency: bool = True,
        fast: FastAnswers | None = None,
    ) -> None:
        self.app = app
        # Nobody can read the histogram while /metrics is off: no need to fill it.
        self.latency = Latency(metrics) if observe_latency else None
        self.viewers = metrics.viewers
        self.buckets = Buckets(clock=clock, rules=rules)
        self.hosts = TrustedHosts(hosts=hosts, exempt_paths=host_exempt_paths)
        self.header_exempt = header_exempt_prefixes
        self.max_body = max_body
        self.large_bodies = dict(large_bodies or {})
        """Paths whose body may be larger than ``max_body``, with their own limit (exact)."""
        self.max_headers = max_headers
        self.recording = _as_sent if fast is None else fast.recording
        """``send`` as the app's answers leave the edge: the fast path records those it may
        serve again."""
        if fast is not None:
            fast.bind(self.buckets, self.latency, max_headers)

    def body_limit(self, path: str) -> int:
        """The body a request to ``path`` may carry."""
        return self.large_bodies.get(path, self.max_body)

    def _limited(self, scope: Scope, size: int, declared: bytes | None) -> Refusal | None:
        """The 431/413/429 a request gets before anything else, if any."""
        refusal = too_large(size, declared, self.body_limit(scope["path"]), self.max_headers)
        if refusal is None and (wait := self.buckets.wait(scope)) > 0:
            refusal = too_many(wait)
        return refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        send = self.recording(scope, send)
        size, host, incoming, declared, chunked = _read(scope["headers"])
        rid = request_id(incoming)
        holder, token = enter_request(rid)
        rid_header = rid.encode("latin-1")
        exempt = scope["path"].startswith(self.header_exempt)
        secured = False  # past the limits: the security headers apply
        status = 0
        streaming = False

        async def edge_send(message: Message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"], stream = response_headers(
                    message.get("headers", ()), secured=secured, exempt=exempt, rid=rid_header
                )
                if self.latency is not None:
                    self.latency.observe(scope, status, started)
                if stream:
                    streaming = True
                    self.viewers.inc()
            await send(message)

        try:
            refusal = self._limited(scope, size, declared)
            if refusal is not None:
                await refusal.response(REFUSED)(scope, receive, edge_send)
            else:
                secured = True
                try:
                    try:
                        if not self.hosts.allowed(scope, host):
                            refused = BadRequest(UNKNOWN_HOST).response(_NO_STORE)
                            await refused(scope, receive, edge_send)
                        elif chunked:
                            limit = self.body_limit(scope["path"])
                            await self.app(scope, counted(receive, limit), edge_send)
                        else:
                            # Content-Length (checked above) or no body at all: the server
                            # delivers no more than that, so nothing to count.
                            await self.app(scope, receive, edge_send)
                    finally:
                        log_access(scope, status, started)
                except Overflow:
                    secured = False
                    await BodyTooLarge(TOO_LARGE).response(REFUSED)(scope, receive, edge_send)
        finally:
            if streaming:
                self.viewers.dec()
        leave_request(holder, token)
