"""Security headers on every response, trusted ``Host`` names, same-origin checks, and an access
log without secrets.

Nothing builds a URL from the ``Host`` header (the public origin comes from settings, redirects
are relative or go to fixed hosts), and a request naming a host this site is not is refused
with a 400 before any route sees it, so no framework default can build one either.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import BadRequest

access_log = logging.getLogger("nowplaying.access")

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: Request, public_origin: str) -> bool:
    """Whether a state-changing request comes from our own pages.

    ``Origin`` decides when present; lacking it, ``Referer``; lacking both (old clients, curl), the
    request is refused — a cross-site form always carries one of them in current browsers.
    """
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.lower() == public_origin
    referer = request.headers.get("referer")
    if referer:
        try:
            return origin_of(referer) == public_origin
        except ValueError:  # not even a URL: certainly not ours
            return False
    return False


_HOST = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[^:\[\]]+))(?::\d{1,5})?")


def host_name(header: str) -> str | None:
    """The host name of a ``Host`` header value: lower case, no port, no trailing dot."""
    match = _HOST.fullmatch(header.strip().lower())
    if match is None:
        return None
    return match["v6"] or match["name"].rstrip(".")


class TrustedHosts:
    """Pure ASGI middleware: refuse (400) requests whose ``Host`` is not one of ``hosts``.

    The port is ignored. Without a ``Host`` header (HTTP/1.0) the server's own address is what a
    URL would be built from, so that is checked instead. ``exempt_paths`` (``/healthz``) answer
    whatever the host, for load balancers that probe by IP.
    """

    def __init__(
        self, app: ASGIApp, *, hosts: Collection[str], exempt_paths: Collection[str] = ()
    ) -> None:
        self.app = app
        self.hosts = frozenset(hosts)
        self.exempt = frozenset(exempt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.exempt:
            header = Headers(scope=scope).get("host")
            if header is not None:
                name = host_name(header)
            else:
                server = scope.get("server")
                name = str(server[0]).lower() if server else None
            if name not in self.hosts:
                refusal = BadRequest("Unknown host.").response({"Cache-Control": "no-store"})
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def printable(text: str, limit: int = 200) -> str:
    """Text safe for one log line: control characters escaped, length capped."""
    return repr(text[:limit])[1:-1]


class SecurityHeaders:
    """Pure ASGI middleware: baseline headers everywhere, a strict CSP on our own pages."""

    def __init__(self, app: ASGIApp, *, exempt_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.exempt = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        exempt = any(path.startswith(p) for p in self.exempt)
        started = time.perf_counter()
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                if not exempt:
                    csp = headers.setdefault("Content-Security-Policy", PAGE_CSP)
                    if "frame-ancestors 'none'" in csp:  # embeds set their own frame-ancestors
                        headers.setdefault("X-Frame-Options", "DENY")
                    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            # The path only: query strings carry OAuth codes and states.
            access_log.info(
                "%s %s %s %.1fms",
                scope.get("method", "-"),
                printable(path),
                status or "-",
                (time.perf_counter() - started) * 1000,
            )
