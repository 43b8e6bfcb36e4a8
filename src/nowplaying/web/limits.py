"""Abuse limits, as pure ASGI middleware: request size and header limits, and per-client-IP
rate limits on the endpoints worth abusing (``/login``, ``/callback``, public ``/p/...``).

The client address is the connection's, or — only when ``NOWPLAYING_TRUSTED_PROXIES`` names the
proxy — the one it forwarded (uvicorn's ProxyHeadersMiddleware rewrites ``scope["client"]``
before this runs). Buckets live in this process: with several instances each enforces its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nowplaying.clock import Clock

from .errors import BodyTooLarge, HeadersTooLarge, Refusal, TooManyRequests

MAX_BODY = 64 * 1024
MAX_HEADERS = 16 * 1024
MAX_BUCKETS = 20_000


@dataclass(frozen=True, slots=True)
class Rule:
    """``rate`` requests per second on average, ``burst`` at once, for paths ``matches``."""

    name: str
    matches: Callable[[str], bool]
    rate: float
    burst: float


def rules(*, login_per_minute: float = 20.0, public_per_second: float = 10.0) -> tuple[Rule, ...]:
    """The limits; a rate of 0 leaves that group unlimited."""
    chosen = []
    if login_per_minute > 0:
        chosen.append(
            Rule("login", lambda p: p in ("/login", "/callback"), login_per_minute / 60, 10)
        )
    if public_per_second > 0:
        # Generous: README image proxies (GitHub's camo) fetch for many viewers from few addresses.
        chosen.append(Rule("public", lambda p: p.startswith("/p/"), public_per_second, 120))
    return tuple(chosen)


DEFAULT_RULES = rules()


#: Refused before any route (and outside the security headers), so these are set here.
_REFUSED = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


async def _refuse(scope: Scope, receive: Receive, send: Send, refusal: Refusal) -> None:
    await refusal.response(_REFUSED)(scope, receive, send)


class RequestLimits:
    """413 for bodies over ``max_body`` bytes, 431 for headers over ``max_headers`` bytes."""

    def __init__(self, app: ASGIApp, *, max_body: int = MAX_BODY, max_headers: int = MAX_HEADERS):
        self.app = app
        self.max_body = max_body
        self.max_headers = max_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if sum(len(k) + len(v) for k, v in headers) > self.max_headers:
            await _refuse(scope, receive, send, HeadersTooLarge("Request headers are too large."))
            return
        declared = next((v for k, v in headers if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await _refuse(scope, receive, send, BodyTooLarge(_TOO_LARGE))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:  # a chunked body that keeps going
                    raise _Overflow
            return message

        try:
            await self.app(scope, counted, send)
        except _Overflow:
            await _refuse(scope, receive, send, BodyTooLarge(_TOO_LARGE))


_TOO_LARGE = "The request body is too large."


class _Overflow(Exception):
    """A streamed body went over the limit (not a Refusal: the app's handlers must let it
    through to :class:`RequestLimits`)."""


class RateLimit:
    """Token buckets per (rule, client address); 429 with Retry-After when one is empty."""

    def __init__(self, app: ASGIApp, *, clock: Clock, rules: tuple[Rule, ...] = DEFAULT_RULES):
        self.app = app
        self.clock = clock
        self.rules = rules
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            rule = next((r for r in self.rules if r.matches(scope["path"])), None)
            if rule is not None:
                client = scope.get("client") or ("unknown", 0)
                wait = self._take(rule, str(client[0]))
                if wait > 0:
                    self.refused += 1
                    refusal = TooManyRequests(
                        "Too many requests from this address; slow down.", retry_after=wait
                    )
                    await _refuse(scope, receive, send, refusal)
                    return
        await self.app(scope, receive, send)

    def _take(self, rule: Rule, client: str) -> float:
        """Take one token; 0 if allowed, else the seconds until one is available."""
        now = self.clock.now()
        key = (rule.name, client)
        tokens, stamp = self._buckets.get(key, (rule.burst, now))
        tokens = min(rule.burst, tokens + (now - stamp) * rule.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / rule.rate
        if len(self._buckets) >= MAX_BUCKETS and key not in self._buckets:
            self._prune(now)
        self._buckets[key] = (tokens - 1, now)
        return 0.0

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled (they carry no information)."""
        full = [
            k
            for k, (tokens, stamp) in self._buckets.items()
            if tokens + (now - stamp) * next(r.rate for r in self.rules if r.name == k[0])
            >= next(r.burst for r in self.rules if r.name == k[0])
        ]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= MAX_BUCKETS:
            self._buckets.clear()
