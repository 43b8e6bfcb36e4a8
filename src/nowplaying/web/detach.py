"""Detached event streams: after its head and first event, a stream's connection leaves uvicorn.

Served the ASGI way, an open stream keeps uvicorn's protocol and request cycle, the scope, a task
and its frames per viewer (about 19 KB here). :func:`detachable` wraps uvicorn's HTTP protocol so
every scope carries ``extensions[EXTENSION]``: the app hands it a small :class:`asyncio.Protocol`
of its own, uvicorn counts the response complete and forgets the connection, and that protocol
writes the chunks and hears the hang-up (about 3 KB per viewer). A lost connection is passed back
to uvicorn's protocol, so the connection guard counts it out. Without the extension (a test
client, another server) streams are served the ASGI way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

EXTENSION = "nowplaying.detach"
"""The scope extension: ``detach(protocol) -> lost-callback | None``."""

Detach = Callable[[asyncio.Protocol], Callable[[Exception | None], None] | None]


def detach_of(scope: Scope) -> Detach | None:
    """The scope's detach function, when the server offers one."""
    found: Detach | None = scope.get("extensions", {}).get(EXTENSION)
    return found


def detachable(base: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class ``base`` with :data:`EXTENSION` offered to the app."""
    return type(f"Detachable{base.__name__}", (_Detachable, base), {})


class _Detachable(asyncio.Protocol):
    """The detaching half of a protocol class (the other half is uvicorn's)."""

    app: ASGIApp
    transport: asyncio.Transport
    cycle: Any  # uvicorn's RequestResponseCycle (h11's or httptools')
    connections: set[asyncio.Protocol]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        inner, detach = self.app, self._detach

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                scope["extensions"] = {**scope.get("extensions", {}), EXTENSION: detach}
            await inner(scope, receive, send)

        self.app = app

    def _detach(self, protocol: asyncio.Protocol) -> Callable[[Exception | None], None] | None:
        """Hand the connection to ``protocol``; what to call when it ends (None: the response
        cannot be detached, and goes on the ASGI way)."""
        cycle = self.cycle
        if (
            cycle is None
            or not cycle.response_started
            or cycle.response_complete
            or cycle.scope.get("http_version") != "1.1"  # chunked framing
            or getattr(cycle, "chunked_encoding", True) is False
            or getattr(self, "pipeline", None)  # a request waiting behind this one
            or self.transport.is_closing()
        ):
            return None
        cycle.response_complete = True  # uvicorn writes nothing more and closes nothing
        cycle.keep_alive = False
        self.connections.discard(self)  # nor does its shutdown wait for this connection
        # The request is served: let what it held go (uvicorn reads none of it again).
        cycle.scope = cycle.body = None
        for name in ("app", "scope", "headers", "url", "expect_100_continue"):
            if name in self.__dict__:
                setattr(self, name, None)
        if type(getattr(self, "parser", None)).__module__.startswith("httptools"):
            self.parser = None  # httptools' own connection_lost drops it too
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        return self.connection_lost
