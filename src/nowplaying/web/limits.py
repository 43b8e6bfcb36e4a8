"""Abuse limits applied by :mod:`.edge`: request sizes, and per-address rate limits.

The address is the connection's, or the forwarded one only when ``NOWPLAYING_TRUSTED_PROXIES``
names the proxy. Buckets live in this process: with several instances each enforces its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import Message, Receive, Scope

from nowplaying.clock import Clock
from nowplaying.web.errors import BodyTooLarge, HeadersTooLarge, Refusal, TooManyRequests

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
        chosen.append(Rule("login", _signs_in, login_per_minute / 60, 10))
    if public_per_second > 0:
        # Generous: README image proxies (GitHub's camo) fetch for many viewers from few addresses.
        chosen.append(Rule("public", lambda p: p.startswith("/p/"), public_per_second, 120))
    return tuple(chosen)


def _signs_in(path: str) -> bool:
    """Spotify's login and callback, and each other source's (``/login/lastfm``...)."""
    return path in {"/login", "/callback"} or path.startswith(("/login/", "/callback/"))


DEFAULT_RULES = rules()


#: Refused before any route (and without the security headers), so these are set here.
REFUSED = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def too_large(size: int, declared: bytes | None, max_body: int, max_headers: int) -> Refusal | None:
    """431 for headers of ``size`` bytes over ``max_headers``, 413 for a ``Content-Length``
    over ``max_body`` (or not a number)."""
    if size > max_headers:
        return HeadersTooLarge("Request headers are too large.")
    if declared is not None and (not declared.isdigit() or int(declared) > max_body):
        return BodyTooLarge(TOO_LARGE)
    return None


TOO_LARGE = "The request body is too large."


class Overflow(Exception):
    """A streamed body went over the limit (not a Refusal: the app's handlers must let it
    through to the edge, which answers 413)."""


def counted(receive: Receive, max_body: int) -> Receive:
    """``receive`` that raises :class:`Overflow` once the body passes ``max_body`` bytes (a
    chunked body that keeps going)."""
    seen = 0

    async def receive_counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > max_body:
                raise Overflow
        return message

    return receive_counted


def too_many(wait: float) -> Refusal:
    return TooManyRequests("Too many requests from this address; slow down.", retry_after=wait)


class Buckets:
    """Token buckets per (rule, client address)."""

    def __init__(self, *, clock: Clock, rules: tuple[Rule, ...] = DEFAULT_RULES):
        self.clock = clock
        self.rules = rules
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self.refused = 0

    def wait(self, scope: Scope) -> float:
        """0 if the request may go on (a token taken), else the seconds until it may."""
        client = scope.get("client") or ("unknown", 0)
        wait = self.take(scope["path"], str(client[0]))
        if wait > 0:
            self.refused += 1
        return wait

    def take(self, path: str, client: str) -> float:
        """As :meth:`wait` for a request to ``path`` from ``client``, not counting a refusal
        (the fast path's check: a refused request goes on to the edge, which counts it)."""
        rule = next((r for r in self.rules if r.matches(path)), None)
        return 0.0 if rule is None else self._take(rule, client)

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
