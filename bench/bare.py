"""The reference for throughput: a bare Starlette JSON endpoint, nothing else.

``uvicorn bench.bare:create --factory`` serves it; ``BENCH_PAYLOAD`` (JSON) is the body, the same
one ``/api/spotify`` answered with, so both servers send bodies of the same size. The endpoint is
``async`` (a plain ``lambda`` would run in Starlette's thread pool and make the reference slower).
"""

from __future__ import annotations

import json
import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def create() -> Starlette:
    payload: dict[str, Any] = json.loads(os.environ.get("BENCH_PAYLOAD") or '{"ok": true}')

    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse(payload)

    return Starlette(routes=[Route("/", endpoint)])
