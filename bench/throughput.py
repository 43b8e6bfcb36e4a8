"""``GET /api/spotify`` requests per second, as a ratio to a bare Starlette JSON endpoint.

Both servers run at once, each in its own process under uvicorn with the same settings (one
worker, no access log, log level warning); :mod:`bench.loadgen` loads one of them at a time, in
its own process, alternating A/B/A/B so drift on the machine hits both alike. The engine is
signed in, so every request goes through the session lookup and is answered from shared state.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass, field

import httpx

from .servers import ROOT, ServerProcess, bare_server, nowplaying_server, sign_in

ROUNDS = 5
SECONDS = 3.0
CONNECTIONS = 48


@dataclass(frozen=True)
class Trial:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu: float
    """The server's CPU use during the trial, in cores (1.0 = one core busy all the time)."""
    client_cpu: float
    """The load generator's, likewise."""


@dataclass
class Result:
    engine: list[Trial] = field(default_factory=list)
    bare: list[Trial] = field(default_factory=list)
    body_bytes: int = 0

    @property
    def engine_rps(self) -> float:
        return statistics.median(t.rps for t in self.engine)

    @property
    def bare_rps(self) -> float:
        return statistics.median(t.rps for t in self.bare)

    @property
    def ratio(self) -> float:
        """The median of each round's ratio: a burst of other load on the machine hits a round's
        two trials, one after the other, more alike than it hits two medians."""
        return statistics.median(e.rps / b.rps for e, b in zip(self.engine, self.bare, strict=True))


def _trial(server: ServerProcess, path: str, headers: list[str]) -> Trial:
    cmd = [sys.executable, "-m", "bench.loadgen", f"{server.url}{path}"]
    cmd += [f"--header={h}" for h in headers]
    cmd += [f"--connections={CONNECTIONS}", f"--seconds={SECONDS}"]
    cmd += [f"--server-pid={server.proc.pid}"]
    done = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 30, check=True
    )
    out = json.loads(done.stdout)
    return Trial(
        rps=out["rps"],
        p50_ms=out["p50_ms"],
        p99_ms=out["p99_ms"],
        errors=out["errors"],
        server_cpu=out["server_cpu"],
        client_cpu=out["client_cpu"],
    )


async def run() -> Result:
    result = Result()
    with nowplaying_server() as engine:
        cookie = await sign_in(engine.url)
        async with httpx.AsyncClient(base_url=engine.url) as http:
            first = await http.get("/api/spotify", headers={"Cookie": cookie})
        if first.status_code != 200:
            raise RuntimeError(f"/api/spotify answered {first.status_code}")
        result.body_bytes = len(first.content)
        with bare_server(first.json()) as bare:
            for _ in range(ROUNDS):
                result.engine.append(
                    await asyncio.to_thread(_trial, engine, "/api/spotify", [f"Cookie: {cookie}"])
                )
                result.bare.append(await asyncio.to_thread(_trial, bare, "/", []))
    return result
