"""Security headers, trusted ``Host`` names, same-origin checks, an access log without secrets.

Nothing builds a URL from the ``Host`` header, and a request naming a host this site is not is
refused before any route sees it, so no framework default can build one either.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import Scope

access_log = logging.getLogger("nowplaying.access")

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
JSON_CSP = "default-src 'none'; frame-ancestors 'none'"
"""The policy of a JSON response (the API's, the public JSON's, every error envelope): opened as
a document, it may load nothing and be framed by nobody."""


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


HOST_VERDICTS = 256


class TrustedHosts:
    """Whether a request's ``Host`` is one of ``hosts`` (the edge refuses it with a 400 if not).

    The port is ignored. Without a ``Host`` header (HTTP/1.0) the server's own address is what a
    URL would be built from, so that is checked instead. ``exempt_paths`` (``/healthz``) answer
    whatever the host, for load balancers that probe by IP.
    """

    def __init__(self, *, hosts: Collection[str], exempt_paths: Collection[str] = ()) -> None:
        self.hosts = frozenset(hosts)
        self.exempt = frozenset(exempt_paths)
        self._verdicts: dict[bytes, bool] = {}
        """Whether a ``Host`` value (as sent) names one of ``hosts``: the few a site sees, so
        the parse runs once per value (bounded by :data:`HOST_VERDICTS`)."""

    def allowed(self, scope: Scope, header: bytes | None) -> bool:
        """Whether a request with this ``Host`` header (None: none sent) may go on."""
        if scope["path"] in self.exempt:
            return True
        if header is None:
            server = scope.get("server")
            return (str(server[0]).lower() if server else None) in self.hosts
        verdict = self._verdicts.get(header)
        if verdict is None:
            verdict = host_name(header.decode("latin-1")) in self.hosts
            if len(self._verdicts) < HOST_VERDICTS:
                self._verdicts[header] = verdict
        return verdict


UNKNOWN_HOST = "Unknown host."


def printable(text: str, limit: int = 200) -> str:
    """Text safe for one log line: control characters escaped, length capped."""
    return repr(text[:limit])[1:-1]


_BASELINE = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"))
_CSP = b"content-security-policy"
_PAGE_CSP = PAGE_CSP.encode()
_JSON_CSP = JSON_CSP.encode()
_JSON = b"application/json"


def _all(csp: bytes) -> tuple[tuple[bytes, bytes], ...]:
    return (
        *_BASELINE,
        (_CSP, csp),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-opener-policy", b"same-origin"),
    )


_ALL, _ALL_JSON = _all(_PAGE_CSP), _all(_JSON_CSP)
SECURITY_NAMES = frozenset(name for name, _ in _ALL)
"""The names of the headers :func:`with_security_headers` adds."""


def _is_json(content_type: bytes | None) -> bool:
    return content_type is not None and content_type.startswith(_JSON)


def security_headers_for(content_type: bytes | None) -> tuple[tuple[bytes, bytes], ...]:
    """Every security header, for a response (of ``content_type``) that sets none itself: the
    usual case, which the edge answers with this alone."""
    return _ALL_JSON if _is_json(content_type) else _ALL


def with_security_headers(raw: list[tuple[bytes, bytes]], exempt: bool) -> None:
    """Add to a response's raw headers each one it does not set itself (the first of a name
    counts, as with ``MutableHeaders.setdefault``); for a response that sets none of them this
    appends :func:`security_headers_for` exactly."""
    have = dict(reversed(raw))
    raw.extend([pair for pair in _BASELINE if pair[0] not in have])
    if exempt:
        return
    csp = have.get(_CSP)
    if csp is None:
        csp = _JSON_CSP if _is_json(have.get(b"content-type")) else _PAGE_CSP
        raw.append((_CSP, csp))
    if b"frame-ancestors 'none'" in csp and b"x-frame-options" not in have:
        raw.append((b"x-frame-options", b"DENY"))  # embeds set their own frame-ancestors
    if b"cross-origin-opener-policy" not in have:
        raw.append((b"cross-origin-opener-policy", b"same-origin"))


SECRET_PATHS = ("/hooks/web-scrobbler/",)
"""Paths whose last segment is a secret (Web Scrobbler's webhook carries the push token)."""


def loggable(path: str) -> str:
    """``path`` with a secret segment replaced, for logs."""
    for prefix in SECRET_PATHS:
        if path.startswith(prefix):
            return prefix + "<token>"
    return path


def log_access(scope: Scope, status: int, started: float) -> None:
    """The access log line of a request: the path only, for query strings carry OAuth codes and
    states, and without a push token (:func:`loggable`); the client's address as the app saw it
    (a trusted proxy's forwarded client). (Guarded: the arguments cost more than the disabled
    call.)"""
    if access_log.isEnabledFor(logging.INFO):
        client = scope.get("client")
        where = str(client[0]) if client else "-"
        log_access_line(scope.get("method", "-"), scope["path"], status, started, where)


def log_access_line(method: str, path: str, status: int, started: float, client: str) -> None:
    """The access line itself (the fast path's, and :func:`log_access`'s); the client's address
    goes on the record (``client``), written by the log formatters beside the request id."""
    access_log.info(
        "%s %s %s %.1fms",
        method,
        printable(loggable(path)),
        status or "-",
        (time.perf_counter() - started) * 1000,
        extra={"client": printable(client, 64)},
    )
