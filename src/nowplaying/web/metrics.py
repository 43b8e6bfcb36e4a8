"""``GET /metrics`` (Prometheus text format) and the middleware that times every request.

Not public: with ``NOWPLAYING_METRICS_TOKEN`` unset the route is a 404, with it set a scrape must
send ``Authorization: Bearer <token>`` (anything else is a 401). Prometheus scrapes by address,
so ``/metrics`` answers whatever the ``Host`` (as ``/healthz`` does).
"""

from __future__ import annotations

import secrets
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nowplaying.metrics import CONTENT_TYPE, Metrics

from .errors import NotFound, Unauthorized
from .state import services

EVENT_STREAM = b"text/event-stream"


async def metrics(request: Request) -> Response:
    svc = services(request)
    token = svc.settings.nowplaying_metrics_token.get_secret_value()
    if not token:
        raise NotFound
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), token.encode()):
        raise Unauthorized("Send the metrics token: Authorization: Bearer <token>.")
    return Response(
        svc.metrics.render(), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"}
    )


class RequestMetrics:
    """Time to the response's start per route template; count open event streams."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        streaming = False

        async def timed(message: Message) -> None:
            nonlocal streaming
            if message["type"] == "http.response.start":
                route = scope.get("route")
                self.metrics.latency.labels(
                    getattr(route, "path", "unmatched"), scope["method"], str(message["status"])
                ).observe(time.perf_counter() - started)
                headers = dict(message.get("headers", ()))
                if headers.get(b"content-type", b"").startswith(EVENT_STREAM):
                    streaming = True
                    self.metrics.viewers.inc()
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            if streaming:
                self.metrics.viewers.dec()
