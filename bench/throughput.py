"""Requests per second of ``/api/spotify``, ``/p/ID.json`` and ``/p/ID.svg`` (cover embedded),
each as a ratio to a bare Starlette JSON endpoint measured in the same run.

Both servers run at once, each in its own process under uvicorn with the same settings (one
worker, no access log, log level warning); :mod:`bench.loadgen` loads one of them at a time, in
its own process, alternating engine endpoints and the bare one round by round so drift on the
machine hits all alike. The engine is signed in (``/api/spotify`` goes through the session
lookup) and its account published (the public routes go through the public-id lookup); every
answer comes from shared state, the card's cover from the cover cache. The public rate limit is
off, since one load generator is one client address.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass, field

import httpx

from bench.servers import ROOT, ServerProcess, bare_server, nowplaying_server, sign_in

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


ENDPOINTS: dict[str, float] = {"/api/spotify": 0.7, "/p/ID.json": 0.6, "/p/ID.svg": 0.45}
"""Each engine endpoint measured, with its target ratio to bare Starlette (issue 11)."""


@dataclass
class Result:
    endpoints: dict[str, list[Trial]] = field(default_factory=dict)
    """Trials per engine endpoint (keys of :data:`ENDPOINTS`), one per round."""
    bare: list[Trial] = field(default_factory=list)
    body_bytes: int = 0
    svg_bytes: int = 0

    @property
    def engine(self) -> list[Trial]:
        """The ``/api/spotify`` trials."""
        return self.endpoints.get("/api/spotify", [])

    @property
    def bare_rps(self) -> float:
        return statistics.median(t.rps for t in self.bare)

    def ratio_of(self, endpoint: str) -> float:
        """The median of each round's ratio: a burst of other load on the machine hits a round's
        trials, one after the other, more alike than it hits two medians."""
        trials = self.endpoints[endpoint]
        return statistics.median(e.rps / b.rps for e, b in zip(trials, self.bare, strict=True))

    def cpu_ratios(self, endpoint: str) -> list[float]:
        """Each round's bare server CPU per request over the engine's: the same comparison by
        work done rather than by throughput, which other load on the machine disturbs less
        (a server that gets a quarter of a core still spends its own CPU per request)."""
        trials = self.endpoints[endpoint]
        return [
            (b.server_cpu / b.rps) / (e.server_cpu / e.rps)
            for e, b in zip(trials, self.bare, strict=True)
            if e.rps > 0 and b.rps > 0 and e.server_cpu > 0
        ]

    @property
    def ratio(self) -> float:
        return self.ratio_of("/api/spotify")


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
    with nowplaying_server(extra_env={"NOWPLAYING_PUBLIC_RATE_PER_SECOND": "0"}) as engine:
        cookie = await sign_in(engine.url)
        async with httpx.AsyncClient(base_url=engine.url, timeout=10) as http:
            first = await http.get("/api/spotify", headers={"Cookie": cookie})
            if first.status_code != 200:
                raise RuntimeError(f"/api/spotify answered {first.status_code}")
            published = await http.post(
                "/api/account/publish", headers={"Cookie": cookie, "Origin": engine.url}
            )
            published.raise_for_status()
            public = f"/p/{published.json()['publicId']}"
            card = await http.get(f"{public}.svg")
            if card.status_code != 200 or "data:image/" not in card.text:
                raise RuntimeError(f"{public}.svg answered {card.status_code} without a cover")
            result.svg_bytes = len(card.content)
            if (await http.get(f"{public}.json")).status_code != 200:
                raise RuntimeError(f"{public}.json did not answer 200")
        result.body_bytes = len(first.content)
        paths = {
            "/api/spotify": ("/api/spotify", [f"Cookie: {cookie}"]),
            "/p/ID.json": (f"{public}.json", []),
            "/p/ID.svg": (f"{public}.svg", []),
        }
        with bare_server(first.json()) as bare:
            for _ in range(ROUNDS):
                for name, (path, headers) in paths.items():
                    trial = await asyncio.to_thread(_trial, engine, path, headers)
                    result.endpoints.setdefault(name, []).append(trial)
                result.bare.append(await asyncio.to_thread(_trial, bare, "/", []))
    return result
