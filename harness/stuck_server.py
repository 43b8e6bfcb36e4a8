"""``python -m harness.stuck_server PORT SECONDS``: a stream that ignores the drain, served as
``nowplaying serve`` serves (:class:`GracefulServer`), so a test can prove the shutdown bound
holds when a response never ends by itself. :func:`worker` is the same app as a
:func:`~nowplaying.cli.serve.serve_workers` target.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from nowplaying.cli.serve import GracefulServer


async def _forever() -> AsyncIterator[str]:
    yield ": stuck\n\n"
    while True:
        await asyncio.sleep(3600)  # a stream that will not end on its own
        yield ": still here\n\n"


async def stuck(request: Request) -> Response:
    return StreamingResponse(_forever(), media_type="text/event-stream")


async def pid(request: Request) -> Response:
    return PlainTextResponse(str(os.getpid()))


def _app() -> Starlette:
    return Starlette(routes=[Route("/stuck", stuck), Route("/pid", pid)])


def worker(sockets: list[socket.socket]) -> None:
    """A ``serve_workers`` target (spawned, so module level and picklable)."""
    app = _app()
    config = uvicorn.Config(app, log_level="warning")
    GracefulServer(config, app, shutdown_seconds=2.0).run(sockets)


def main(port: int, seconds: float) -> int:
    app = _app()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info")
    server = GracefulServer(config, app, shutdown_seconds=seconds)
    server.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(int(sys.argv[1]), float(sys.argv[2])))
