"""Refusals: one exception per way a JSON request is turned down, each with its status and slug.

Handlers raise them; :func:`nowplaying.web.app.create_app` answers every one in one handler with
the :class:`~nowplaying.views.Error` envelope. (The public JSON reports reconnect and unavailable
states as data instead, and the SVG card is always an image: those are answers, not refusals.)

::

    Refusal
     ├── NotConnected         401 not_connected
     ├── ReconnectRequired    401 reconnect_required
     ├── Unauthorized         401 unauthorized (a missing or wrong bearer token on /metrics)
     ├── NotFound             404 not_found
     └── Unavailable          503 unavailable, Retry-After
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from starlette.responses import Response

from nowplaying.views import Error, ErrorCode, View


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


class NotConnected(Refusal):
    status, code = 401, ErrorCode.NOT_CONNECTED


class ReconnectRequired(Refusal):
    status, code = 401, ErrorCode.RECONNECT_REQUIRED


class Unauthorized(Refusal):
    status, code = 401, ErrorCode.UNAUTHORIZED


class NotFound(Refusal):
    status, code = 404, ErrorCode.NOT_FOUND


class Unavailable(Refusal):
    status, code = 503, ErrorCode.UNAVAILABLE

    def __init__(self, message: str | None = None, *, retry_after: float) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, round(retry_after)))})


def json_response(
    view: View, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A view serialised once, straight to the body (no intermediate dict, no second encoder)."""
    return Response(view.body(), status, headers=headers, media_type="application/json")
