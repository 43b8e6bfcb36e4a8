"""Refusals: one exception per way a JSON request is turned down, each with its status and slug.

Handlers raise them; :func:`nowplaying.web.app.create_app` answers every one in one handler with
the :class:`~nowplaying.schema.Error` envelope. (The public JSON reports reconnect and unavailable
states as data instead, and the SVG card is always an image: those are answers, not refusals.)

::

    Refusal
     ├── BadRequest           400 bad_request
     ├── NotConnected         401 not_connected
     ├── MustReconnect        401 reconnect_required
     ├── Unauthorized         401 unauthorized (a missing or wrong bearer token on /metrics)
     ├── CrossSite            403 forbidden (a cross-site write)
     ├── NotFound             404 not_found
     ├── BodyTooLarge         413 body_too_large
     ├── HeadersTooLarge      431 headers_too_large
     ├── TooManyRequests      429 too_many_requests, Retry-After
     ├── ServiceUnavailable   503 unavailable, Retry-After
     └── Busy                 503 busy, Retry-After (no file descriptor left for a stream)

The ASGI middleware that refuses before any route runs (limits, trusted hosts) answers with
:meth:`Refusal.response` too, so the envelope is built here alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import ClassVar

from starlette.responses import Response

from nowplaying.schema import Error, ErrorCode, View


class Refusal(Exception):
    """A request turned down, answered ``status`` with ``{"error": code, "message": ...}``."""

    status: ClassVar[int] = 400
    code: ClassVar[ErrorCode] = ErrorCode.BAD_REQUEST

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None):
        super().__init__(message or self.code.value)
        self.message = message
        self.headers = dict(headers or {})

    def response(self, headers: dict[str, str]) -> Response:
        return json_response(
            Error(error=self.code, message=self.message), self.status, {**headers, **self.headers}
        )


class BadRequest(Refusal):
    """The request says something unreadable (a bad body, an unknown host)."""

    status, code = 400, ErrorCode.BAD_REQUEST


class NotConnected(Refusal):
    status, code = 401, ErrorCode.NOT_CONNECTED


class MustReconnect(Refusal):
    """The session's account holds no usable grant any more: its owner must connect again."""

    status, code = 401, ErrorCode.RECONNECT_REQUIRED


class Unauthorized(Refusal):
    status, code = 401, ErrorCode.UNAUTHORIZED


class CrossSite(Refusal):
    """A state-changing request that did not come from our own pages."""

    status, code = 403, ErrorCode.FORBIDDEN


class NotFound(Refusal):
    status, code = 404, ErrorCode.NOT_FOUND


class Conflict(Refusal):
    """The change would leave things in a state the owner did not mean (said in the message)."""

    status, code = 409, ErrorCode.CONFLICT


class BodyTooLarge(Refusal):
    """A request body over the limit (declared, or streamed past it)."""

    status, code = 413, ErrorCode.BODY_TOO_LARGE


class HeadersTooLarge(Refusal):
    """Request headers over the limit."""

    status, code = 431, ErrorCode.HEADERS_TOO_LARGE


class _ComeBackLater(Refusal):
    """A refusal that says, in whole seconds (at least one), when asking again can succeed."""

    rounding: ClassVar[Callable[[float], int]] = round

    def __init__(self, message: str | None = None, *, retry_after: float) -> None:
        seconds = max(1, type(self).rounding(retry_after))
        super().__init__(message, headers={"Retry-After": str(seconds)})


class TooManyRequests(_ComeBackLater):
    """A client over its rate limit; rounded up, so a polite client is never early."""

    status, code = 429, ErrorCode.TOO_MANY_REQUESTS
    rounding = math.ceil


class ServiceUnavailable(_ComeBackLater):
    status, code = 503, ErrorCode.UNAVAILABLE


class Busy(_ComeBackLater):
    """This server has no file descriptor to spare for one more stream."""

    status, code = 503, ErrorCode.BUSY


RawHeaders = tuple[tuple[bytes, bytes], ...]
"""Response headers as ASGI sends them (lower-case names, latin-1 bytes)."""
_JSON = b"application/json"


def raw_headers(headers: Mapping[str, str]) -> RawHeaders:
    """``headers`` encoded for a response, once (for the fixed headers of a hot route)."""
    return tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())


PRIVATE = {"Cache-Control": "private, no-store"}
"""What only the signed-in owner sees: no shared cache keeps it, no cache stores it."""
PRIVATE_RAW = raw_headers(PRIVATE)


class JSONBody(Response):
    """A JSON body with its headers already encoded: no per-response header processing."""

    media_type = "application/json"

    def __init__(self, body: bytes, status: int = 200, headers: RawHeaders = ()) -> None:
        self.status_code = status
        self.background = None
        self.body = body
        self.raw_headers = [(b"content-length", b"%d" % len(body)), (b"content-type", _JSON)]
        self.raw_headers.extend(headers)


def json_response(
    view: View, status: int = 200, headers: Mapping[str, str] | RawHeaders | None = None
) -> Response:
    """A view as its JSON bytes (rendered once per view: :attr:`View.body`); ``headers`` as a
    mapping, or encoded beforehand with :func:`raw_headers`."""
    if headers is None:
        headers = ()
    elif not isinstance(headers, tuple):
        headers = raw_headers(headers)
    return JSONBody(view.body, status, headers)
