"""``GET /metrics`` (Prometheus text format) and the latency of every request.

A 404 while ``NOWPLAYING_METRICS_TOKEN`` is unset. Prometheus scrapes by address, so
``/metrics`` answers whatever the ``Host`` (as ``/healthz`` does).
"""

from __future__ import annotations

import secrets
import time

from prometheus_client import Histogram
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from nowplaying.ops.metrics import CONTENT_TYPE, Metrics
from nowplaying.web.errors import NotFound, Unauthorized
from nowplaying.web.state import services

EVENT_STREAM = b"text/event-stream"
LATENCY_CHILDREN = 1024


async def metrics(request: Request) -> Response:
    svc = services(request)
    token = svc.runtime.settings.nowplaying_metrics_token.get_secret_value()
    if not token:
        raise NotFound
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), token.encode()):
        raise Unauthorized("Send the metrics token: Authorization: Bearer <token>.")
    return Response(
        svc.metrics.render(), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"}
    )


class Latency:
    """Time to the response's start per route template (observed by the edge middleware)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # The histogram's child per (route, method, status): labels() validates and locks on
        # every call, and the set is small (route templates, not paths; bounded all the same,
        # since the method is the client's).
        self._latency: dict[tuple[str, str, int], Histogram] = {}

    def observe(self, scope: Scope, status: int, started: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        self.observe_route(route, scope["method"], status, started)

    def observe_route(self, route: str, method: str, status: int, started: float) -> None:
        """:meth:`observe` for a request known by its route template and method."""
        key = (route, method, status)
        child = self._latency.get(key)
        if child is None:
            child = self.metrics.latency.labels(route, method, str(status))
            if len(self._latency) < LATENCY_CHILDREN:
                self._latency[key] = child
        child.observe(time.perf_counter() - started)
