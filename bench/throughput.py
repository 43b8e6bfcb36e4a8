"""Requests per second of ``/api/spotify``, ``/p/ID.json`` and ``/p/ID.svg`` (cover embedded),
each as a ratio to nginx serving the same bytes as static files, measured in the same run.

The reference is what the machine can do: Debian's nginx (one worker, no access log) serves the
exact bodies the engine answered, under the same paths and content types. Beside it, in the same
rounds, run the engine on the server stack it picks (``nowplaying serve``: uvicorn with httptools
and uvloop when installed) and on the pure-Python fallback (``--http h11 --loop asyncio``), and a
bare Starlette endpoint on each candidate stack (uvicorn + h11, uvicorn + httptools + uvloop,
Granian when installed), which is how the stack was chosen.

``wrk -t1 -c8`` loads one server at a time for :data:`SECONDS`; every server and path is loaded
once per round, and each round's ratio compares trials run seconds apart, so drift on the shared
machine hits both sides alike. The server's CPU time per request (its whole process tree, read
from /proc) is printed too: a server given half a core by other load still spends its own CPU per
request. The engine is signed in and its account published; the public rate limit is off, since
one load generator is one client address.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import shutil
import statistics
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

import httpx
from harness.helpers import ONE_ADDRESS_AUDIENCE
from harness.servers import ServerProcess, nowplaying_server, sign_in

from bench.servers import bare_server, static_nginx

ROUNDS = 3
SECONDS = 3.0
THREADS = 1
CONNECTIONS = 8

ENDPOINTS: dict[str, float] = {"/api/spotify": 0.2, "/p/ID.json": 0.25, "/p/ID.svg": 0.18}
"""Each engine endpoint measured, with its target ratio to nginx serving the same bytes
(issue 22)."""

ENGINE = "engine, httptools + uvloop"
FALLBACK = "engine, h11 + asyncio"
NGINX = "nginx, static file"
BARE_STACKS = {
    "bare, uvicorn + h11": ("uvicorn", ["--http", "h11", "--loop", "asyncio"]),
    "bare, uvicorn + httptools": ("uvicorn", ["--http", "httptools", "--loop", "uvloop"]),
    "bare, Granian": ("granian", []),
}
"""Bare Starlette on each candidate server stack: name -> (server, its options)."""


@dataclass(frozen=True)
class Trial:
    rps: float
    errors: int
    cpu_us: float
    """The server's CPU time per request (its process tree), in microseconds."""


@dataclass
class Result:
    trials: dict[tuple[str, str], list[Trial]] = field(default_factory=dict)
    """(server, endpoint) -> one trial per round; bare servers have the endpoint ``/``."""
    bytes: dict[str, int] = field(default_factory=dict)
    """Body size of each engine endpoint (nginx serves the same bytes)."""
    skipped: list[str] = field(default_factory=list)

    def ratio_of(self, server: str, endpoint: str, reference: str = NGINX) -> float:
        """The median of each round's ratio to nginx serving the same bytes."""
        return statistics.median(self.ratios(server, endpoint, reference))

    def ratios(self, server: str, endpoint: str, reference: str = NGINX) -> list[float]:
        ref_endpoint = "/p/ID.json" if endpoint == "/" else endpoint
        pairs = zip(
            self.trials[(server, endpoint)], self.trials[(reference, ref_endpoint)], strict=True
        )
        return [t.rps / r.rps for t, r in pairs if r.rps > 0]

    def median_rps(self, server: str, endpoint: str) -> float:
        return statistics.median(t.rps for t in self.trials[(server, endpoint)])

    def median_cpu_us(self, server: str, endpoint: str) -> float:
        return statistics.median(t.cpu_us for t in self.trials[(server, endpoint)])


def _children(pid: int) -> Iterator[int]:
    yield pid
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(p) for p in f.read().split()]
    except OSError:
        return
    for kid in kids:
        yield from _children(kid)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants (nginx and Granian serve from
    child processes)."""
    total = 0.0
    for each in _children(pid):
        try:
            total += ServerProcess.cpu_of(each)
        except OSError:  # a child that just ended
            continue
    return total


def wrk(url: str, headers: list[str], seconds: float) -> tuple[float, int]:
    """Run ``wrk -t1 -c8``; (requests per second, non-2xx/3xx responses and socket errors)."""
    binary = shutil.which("wrk")
    if binary is None:
        raise FileNotFoundError("wrk is not installed (apt-get install wrk)")
    cmd = [binary, f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds:g}s"]
    cmd += [a for h in headers for a in ("-H", h)]
    out = subprocess.run(
        [*cmd, url], capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failed = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (
        sum(int(g) for g in failed.groups()) if failed else 0
    )
    return float(rps.group(1)), errors


def _trial(server: ServerProcess, path: str, headers: list[str]) -> Trial:
    before = tree_cpu_seconds(server.proc.pid)
    rps, errors = wrk(f"{server.url}{path}", headers, SECONDS)
    used = tree_cpu_seconds(server.proc.pid) - before
    return Trial(rps, errors, 1e6 * used / (rps * SECONDS) if rps else 0.0)


async def _prepare(engine: ServerProcess) -> dict[str, tuple[str, list[str], httpx.Response]]:
    """Sign in and publish; each endpoint's path, request headers and a first answer."""
    cookie = await sign_in(engine.url)
    async with httpx.AsyncClient(base_url=engine.url, timeout=10) as http:
        first = await http.get("/api/spotify", headers={"Cookie": cookie})
        if first.status_code != 200:
            raise RuntimeError(f"/api/spotify answered {first.status_code}")
        published = await http.post(
            "/api/account/publish", headers={"Cookie": cookie, "Origin": engine.url}
        )
        public = f"/p/{published.raise_for_status().json()['publicId']}"
        card = await http.get(f"{public}.svg")
        if card.status_code != 200 or "data:image/" not in card.text:
            raise RuntimeError(f"{public}.svg answered {card.status_code} without a cover")
        data = await http.get(f"{public}.json")
        if data.status_code != 200:
            raise RuntimeError(f"{public}.json did not answer 200")
    return {
        "/api/spotify": ("/api/spotify", [f"Cookie: {cookie}"], first),
        "/p/ID.json": (f"{public}.json", [], data),
        "/p/ID.svg": (f"{public}.svg", [], card),
    }


async def run() -> Result:
    result = Result()
    off = ONE_ADDRESS_AUDIENCE
    with ExitStack() as stack:
        engines = {
            ENGINE: stack.enter_context(nowplaying_server(extra_env=off)),
            FALLBACK: stack.enter_context(
                nowplaying_server(extra_env=off, args=["--http", "h11", "--loop", "asyncio"])
            ),
        }
        if not all(importlib.util.find_spec(m) for m in ("httptools", "uvloop")):
            raise RuntimeError("httptools or uvloop is not installed: pip install -e '.[dev]'")
        paths = {name: await _prepare(server) for name, server in engines.items()}
        static = {
            path: (answer.content, answer.headers["content-type"])
            for path, _, answer in paths[ENGINE].values()
        }
        result.bytes = {name: len(answer.content) for name, (_, _, answer) in paths[ENGINE].items()}
        nginx = stack.enter_context(static_nginx(static))
        payload = paths[ENGINE]["/p/ID.json"][2].content
        bare: dict[str, ServerProcess] = {}
        for name, (server, options) in BARE_STACKS.items():
            if importlib.util.find_spec(server) is None:
                result.skipped.append(f"{name}: {server} is not installed")
                continue
            bare[name] = stack.enter_context(bare_server(payload, server=server, options=options))
        for _ in range(ROUNDS):
            for endpoint in ENDPOINTS:
                path = paths[ENGINE][endpoint][0]
                trial = await asyncio.to_thread(_trial, nginx, path, [])
                result.trials.setdefault((NGINX, endpoint), []).append(trial)
                for name, server in engines.items():
                    path, headers, _ = paths[name][endpoint]
                    trial = await asyncio.to_thread(_trial, server, path, headers)
                    result.trials.setdefault((name, endpoint), []).append(trial)
            for name, server in bare.items():
                trial = await asyncio.to_thread(_trial, server, "/", [])
                result.trials.setdefault((name, "/"), []).append(trial)
    return result


def lines(r: Result) -> list[str]:
    """This section's part of the printed table."""
    out = [
        f"3. Throughput against nginx serving the same bytes: wrk -t{THREADS} -c{CONNECTIONS}, "
        f"{SECONDS:g} s per trial, {ROUNDS} rounds, servers alternated within each round",
        "",
        f"   {'server':<30}{'endpoint':<15}{'req/s':>9}{'CPU/req':>11}{'x nginx':>9}"
        f"   {'x nginx per round':<20}target",
    ]
    errors = sum(t.errors for trials in r.trials.values() for t in trials)
    for endpoint, target in ENDPOINTS.items():
        for server in (NGINX, ENGINE, FALLBACK):
            if (server, endpoint) not in r.trials:
                continue
            ratio = r.ratio_of(server, endpoint)
            per_round = " ".join(f"{x:.2f}" for x in r.ratios(server, endpoint))
            aim = f">= {target:g}x" if server == ENGINE else ""
            out.append(
                f"   {server:<30}{endpoint:<15}{r.median_rps(server, endpoint):>9.0f}"
                f"{r.median_cpu_us(server, endpoint):>8.0f} us{ratio:>9.2f}"
                f"   {per_round:<20}{aim}".rstrip()
            )
    out.append(f"   {'(bodies: ' + ', '.join(f'{k} {v} B' for k, v in r.bytes.items()) + ')'}")
    for server in BARE_STACKS:
        if (server, "/") in r.trials:
            per_round = " ".join(f"{x:.2f}" for x in r.ratios(server, "/"))
            out.append(
                f"   {server:<30}{'/ (JSON)':<15}{r.median_rps(server, '/'):>9.0f}"
                f"{r.median_cpu_us(server, '/'):>8.0f} us{r.ratio_of(server, '/'):>9.2f}"
                f"   {per_round:<20}(vs nginx /p/ID.json)"
            )
    out += [f"   skipped: {s}" for s in r.skipped]
    failing = {f"{s} {e}": n for (s, e), ts in r.trials.items() if (n := sum(t.errors for t in ts))}
    out.append(f"   errors: {errors} {failing or ''}".rstrip())
    return [*out, ""]
