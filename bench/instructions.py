"""Instructions per request, counted by valgrind: the throughput comparison (section 3) in a
figure that other load on the machine cannot move.

Each server runs as in section 3 (uvicorn with httptools and uvloop, one process), but under
``valgrind --tool=callgrind`` with instrumentation off while it starts. After a warm-up,
``callgrind_control`` switches counting on and zeroes it, :data:`REQUESTS` requests go over
:data:`CONNECTIONS` keep-alive connections, and the dump's total is divided by their number.
The count covers the whole process in user space (uvicorn, h11, asyncio, the app; the kernel's
share, the same for both servers, is left out), and also the engine's own poll of the simulated
Spotify once a second, which the slowed-down server spreads over fewer requests than at full
speed (a few thousand instructions a request more than in section 3).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from harness.helpers import ONE_ADDRESS_AUDIENCE
from harness.servers import ServerProcess, nowplaying_server, sign_in

from bench.loadgen import read_response, request_for
from bench.servers import bare_server
from bench.throughput import ENDPOINTS

REQUESTS = 2000
CONNECTIONS = 8
WARMUP = 400


@dataclass(frozen=True)
class Result:
    bare: float
    """Instructions per request of bare Starlette."""
    endpoints: dict[str, float]
    """Instructions per request of each engine endpoint (keys of throughput.ENDPOINTS)."""
    requests: int

    def ratio_of(self, endpoint: str) -> float:
        """Bare over engine: the share of bare Starlette's speed the endpoint would have if
        speed followed instructions."""
        return self.bare / self.endpoints[endpoint]


async def _send(url: str, headers: list[str], requests: int) -> None:
    """``requests`` GETs of ``url`` over :data:`CONNECTIONS` connections; each must be a 200."""
    parts = urlsplit(url)
    request = request_for(url, headers)

    async def one_connection(count: int) -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            for _ in range(count):
                writer.write(request)
                status = await read_response(reader)
                if status != b"200":
                    raise RuntimeError(f"{url} answered {status!r}")
        finally:
            writer.close()

    await asyncio.gather(*(one_connection(requests // CONNECTIONS) for _ in range(CONNECTIONS)))


def _control(server: ServerProcess, *args: str) -> None:
    subprocess.run(
        ["callgrind_control", *args, str(server.proc.pid)], check=True, capture_output=True
    )


async def _count(server: ServerProcess, dump: Path, url: str, headers: list[str]) -> float:
    """Instructions per request of ``url`` on a server running under callgrind."""
    await _send(url, headers, WARMUP)
    _control(server, "-i", "on")
    _control(server, "-z")
    await _send(url, headers, REQUESTS)
    before = set(dump.parent.glob(f"{dump.name}.*"))
    _control(server, "-d")
    _control(server, "-i", "off")
    for _ in range(300):  # the dump is written by the server's own thread, soon after
        for written in set(dump.parent.glob(f"{dump.name}.*")) - before:
            for line in written.read_text().splitlines():
                if line.startswith("totals:"):
                    return int(line.split()[1]) / REQUESTS
        await asyncio.sleep(0.1)
    raise RuntimeError(f"callgrind wrote no dump for {url}")


def _callgrind(dump: Path) -> list[str]:
    """valgrind's command line: count nothing until told (the start is not measured)."""
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={dump}"]


async def run() -> Result:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise FileNotFoundError("valgrind is not installed (apt-get install valgrind)")
    counts: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="np-bench-instr-") as tmp:
        dump = Path(tmp) / "callgrind-engine"
        with nowplaying_server(extra_env=ONE_ADDRESS_AUDIENCE, wrapper=_callgrind(dump)) as engine:
            cookie = await sign_in(engine.url)
            async with httpx.AsyncClient(base_url=engine.url, timeout=60) as http:
                payload = (await http.get("/api/spotify", headers={"Cookie": cookie})).json()
                published = await http.post(
                    "/api/account/publish", headers={"Cookie": cookie, "Origin": engine.url}
                )
                public = f"/p/{published.raise_for_status().json()['publicId']}"
            paths = {
                "/api/spotify": ("/api/spotify", [f"Cookie: {cookie}"]),
                "/p/ID.json": (f"{public}.json", []),
                "/p/ID.svg": (f"{public}.svg", []),
            }
            for name in ENDPOINTS:
                path, headers = paths[name]
                counts[name] = await _count(engine, dump, engine.url + path, headers)
        dump = Path(tmp) / "callgrind-bare"
        with bare_server(payload, wrapper=_callgrind(dump)) as bare:
            bare_count = await _count(bare, dump, bare.url + "/", [])
    return Result(bare=bare_count, endpoints=counts, requests=REQUESTS)


def lines(r: Result) -> list[str]:
    """The section's rows for the printed table."""
    out = [
        "9. Instructions per request (valgrind callgrind, the whole server process in user space;",
        f"   {r.requests} requests per endpoint over {CONNECTIONS} keep-alive connections;"
        " bench/instructions.py)",
        "",
        f"   {'endpoint':<30}{'instructions':>14}{'bare / engine':>16}",
        f"   {'bare Starlette JSON':<30}{r.bare / 1000:>13.0f}k",
    ]
    for name, count in r.endpoints.items():
        out.append(
            f"   {f'GET {name} (engine)':<30}{count / 1000:>13.0f}k{r.ratio_of(name):>16.2f}"
        )
    return [*out, ""]
