"""``GET /metrics`` (Prometheus text format) and the middleware that times every request.

Not public: with ``NOWPLAYING_METRICS_TOKEN`` unset the route is a 404, with it set a scrape must
send ``Authorization: Bearer <token>`` (anything else is a 401). Prometheus scrapes by address,
so ``/metrics`` answers whatever the ``Host`` (as ``/healthz`` does).
"""

from __future__ import annotations

import secrets
import time

from prometheus_client import Histogram
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nowplaying.metrics import CONTENT_TYPE, Metrics

from .errors import NotFound, Unauthorized
from .state import services

EVENT_STREAM = b"text/event-stream"
LATENCY_CHILDREN = 1024


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
        # The histogram's child per (route, method, status): labels() validates and locks on
        # every call, and the set is small (route templates, not paths; bounded all the same,
        # since the method is the client's).
        self._latency: dict[tuple[str, str, int], Histogram] = {}

    def _observer(self, route: str, method: str, status: int) -> Histogram:
        key = (route, method, status)
        child = self._latency.get(key)
        if child is None:
            child = self.metrics.latency.labels(route, method, str(status))
            if len(self._latency) < LATENCY_CHILDREN:
                self._latency[key] = child
        return child

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        streaming = False

        async def timed(message: Message) -> None:
            nonlocal streaming
            if message["type"] == "http.response.start":
                route = getattr(scope.get("route"), "path", "unmatched")
                self._observer(route, scope["method"], message["status"]).observe(
                    time.perf_counter() - started
                )
                content_type = next(
                    (v for k, v in message.get("headers", ()) if k == b"content-type"), b""
                )
                if content_type.startswith(EVENT_STREAM):
                    streaming = True
                    self.metrics.viewers.inc()
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            if streaming:
                self.metrics.viewers.dec()
