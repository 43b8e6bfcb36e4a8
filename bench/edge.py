"""Edge caching: wrk on one public URL through nginx's ``proxy_cache`` (the shipped
``deploy/nginx.conf``), and how many of those requests reached the origin.

A fresh ``nowplaying serve`` (demo mode, polling every second) behind Debian's nginx over TLS is
signed in and published; then ``wrk -t2 -c50`` loads ``/p/{id}.json`` and ``/p/{id}.svg`` in
turn for ``SECONDS`` each. The *edge* rate is wrk's requests per second; the *origin* rate is the
origin's own count of requests on that route (its ``/metrics`` histogram, read before and after)
divided by wrk's measured duration. The app says ``s-maxage=1``: the target is an origin rate of
at most about one request per second per URL, whatever the edge serves.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.nginx import edge_stack, publish

SECONDS = float(os.environ.get("BENCH_EDGE_SECONDS", "10"))
THREADS = 2
CONNECTIONS = 50
ROUTES = {".json": "/p/{public_id}.json", ".svg": "/p/{public_id}.svg"}


@dataclass
class Row:
    url: str
    requests: int
    seconds: float
    non_2xx: int
    origin: float

    @property
    def edge_rps(self) -> float:
        return self.requests / self.seconds

    @property
    def origin_rps(self) -> float:
        return self.origin / self.seconds


@dataclass
class Result:
    rows: list[Row]
    seconds: float
    connections: int


def wrk(url: str, seconds: float) -> tuple[int, float, int]:
    """Run wrk; (requests, measured seconds, non-2xx/3xx responses)."""
    binary = shutil.which("wrk")
    if binary is None:
        raise FileNotFoundError("wrk is not installed (apt-get install wrk)")
    out = subprocess.run(
        [binary, f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds:g}s", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    if done is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0}[done.group(3)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return int(done.group(1)), float(done.group(2)) * scale, int(bad.group(1)) if bad else 0


async def run() -> Result:
    with (
        tempfile.TemporaryDirectory(prefix="np-bench-edge-") as tmp,
        edge_stack(Path(tmp)) as stack,
    ):
        public_id = await publish(stack)
        rows = []
        for suffix, route in ROUTES.items():
            url = f"{stack.proxy.https}/p/{public_id}{suffix}"
            before = await stack.origin_count(route)
            requests, seconds, bad = await asyncio.to_thread(wrk, url, SECONDS)
            origin = await stack.origin_count(route) - before
            rows.append(Row(f"/p/ID{suffix}", requests, seconds, bad, origin))
    return Result(rows, SECONDS, CONNECTIONS)


def lines(r: Result) -> list[str]:
    """This section's part of the printed table."""
    out = [
        f"7. Edge cache: wrk -t{THREADS} -c{r.connections} -d{r.seconds:g}s on one public URL "
        "through nginx proxy_cache (deploy/nginx.conf, TLS), origin counted by its /metrics",
        "",
        f"   {'url':<14}{'edge req/s':>12}{'requests':>10}{'non-2xx':>9}"
        f"{'origin req':>12}{'origin req/s':>14}   target",
    ]
    for row in r.rows:
        out.append(
            f"   {row.url:<14}{row.edge_rps:>12.0f}{row.requests:>10}{row.non_2xx:>9}"
            f"{row.origin:>12.0f}{row.origin_rps:>14.2f}   origin <= ~1/s per URL"
        )
    return [*out, ""]
