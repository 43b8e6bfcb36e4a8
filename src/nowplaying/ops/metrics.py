"""Prometheus metrics for one process, each app with its own registry (tests build many apps).

Upstream responses are counted by an httpx response hook, so no client changes to be counted.
Request durations run to the start of the response (an event stream counts until its headers)
and are labelled by route template, so the label set stays bounded. The engine's and the token
manager's counters are read when scraped.
Connections the guard (``web/guard.py``) closed are counted by reason, the fast path's
(``web/fast.py``) answers by route.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from nowplaying.engine.live import LiveHub
from nowplaying.sources.spotify.grants import TokenManager

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ENDPOINTS = (
    ("/api/token", "token"),
    ("/me/player/currently-playing", "currently-playing"),
    ("/me/player/recently-played", "recently-played"),
    ("/me/player", "player"),
    ("/me", "me"),
)
"""Upstream paths by their ending, named as the simulator counts them; anything else (cover
images) is ``other``."""


def endpoint_of(url: httpx.URL) -> str:
    """The bounded label for an upstream URL."""
    path = url.path.rstrip("/")
    return next((name for end, name in ENDPOINTS if path.endswith(end)), "other")


class _EngineCollector(Collector):
    def __init__(self) -> None:
        self.parts: tuple[LiveHub, TokenManager] | None = None

    def collect(self) -> Iterable[Metric]:
        if self.parts is None:
            return
        hub, tokens = self.parts
        yield CounterMetricFamily(
            "nowplaying_polls", "Polls of Spotify made by this instance.", value=hub.counts["polls"]
        )
        yield CounterMetricFamily(
            "nowplaying_rate_limit_pauses",
            "Times Spotify's 429 paused this app's polling (on this instance).",
            value=hub.app_pause.hits,
        )
        yield CounterMetricFamily(
            "nowplaying_token_refreshes",
            "Access-token refreshes this instance asked Spotify for.",
            value=tokens.counts["refresh"],
        )
        yield GaugeMetricFamily(
            "nowplaying_poll_lag_seconds",
            "How late the last poll started after it was due.",
            value=hub.poll_lag,
        )
        yield GaugeMetricFamily(
            "nowplaying_paused",
            "1 while Spotify's rate limit pauses every poller.",
            value=1.0 if hub.pause is not None else 0.0,
        )


class _CountsCollector(Collector):
    """A counter kept as a mapping elsewhere (label value -> count), read at each scrape."""

    def __init__(self, name: str, documentation: str, label: str) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.counts: Mapping[str, int] = {}

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, count in sorted(self.counts.items()):
            family.add_metric([value], count)
        yield family


class Metrics:
    """The process's metrics and their registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.upstream = Counter(
            "nowplaying_upstream_requests",
            "Responses from Spotify (and cover image hosts), by endpoint and status.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "nowplaying_http_request_duration_seconds",
            "Time to the start of each response, by route template.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.viewers = Gauge(
            "nowplaying_sse_viewers", "Event streams open on this instance.", registry=self.registry
        )
        self.stalled = Counter(
            "nowplaying_sse_stalled_dropped",
            "Detached event streams cut off for not reading (the write deadline, or 256 KB).",
            registry=self.registry,
        )
        self._engine = _EngineCollector()
        self.registry.register(self._engine)
        self._edge = _CountsCollector(
            "nowplaying_edge_closed",
            "Connections the guard closed, by reason (deadlines, caps, the descriptor reserve).",
            "reason",
        )
        self.registry.register(self._edge)
        self._fast = _CountsCollector(
            "nowplaying_fast_answers",
            "Requests answered by the fast path (pre-encoded answers), by route template.",
            "route",
        )
        self.registry.register(self._fast)

    def watch(self, http: httpx.AsyncClient) -> None:
        """Count every response ``http`` receives (an httpx event hook; the client is unchanged
        otherwise)."""
        hooks = http.event_hooks
        http.event_hooks = {**hooks, "response": [*hooks["response"], self._count]}

    async def _count(self, response: httpx.Response) -> None:
        self.upstream.labels(endpoint_of(response.request.url), str(response.status_code)).inc()

    def bind(self, hub: LiveHub, tokens: TokenManager) -> None:
        """Read the live engine's and the token manager's counters at each scrape."""
        self._engine.parts = (hub, tokens)

    def count_edge(self, counts: Mapping[str, int]) -> None:
        """Read the connection guard's closings (by reason) at each scrape."""
        self._edge.counts = counts

    def count_fast(self, counts: Mapping[str, int]) -> None:
        """Read the fast path's answers (by route template) at each scrape."""
        self._fast.counts = counts

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
