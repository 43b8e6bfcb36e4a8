"""The edge probe: ``python -m soak edge [--short]`` (``make soak-edge``), loopback only.

One ``nowplaying serve`` (demo mode, its descriptor limit set to :data:`FILES` with ``prlimit``)
is attacked from 127.0.0.1 while normal clients on 127.0.0.2-9 keep asking for ``/healthz`` and
the home page; each probe prints what held, with figures:

1. slow headers: sockets sending a header line every second and never the blank line; all must
   be closed within the header deadline plus a margin, normal clients served throughout;
2. unfinished requests: one address keeps re-opening connections that send half a request line,
   far past its caps and the descriptor limit; normal clients served, ``/healthz`` answers;
3. slow bodies: requests whose body stops coming; closed at the body deadline;
4. stalled readers: pipelined requests whose answers are never read; dropped at the write
   deadline;
5. the log: warning lines the server wrote during all of it (each closing is one, rate-limited).

The normal clients run in a process of their own (ahead of the others for the CPU where
allowed), measuring before the first probe starts; per phase the probe prints their p50/p99,
how late the prober's own loop woke, the server's CPU seconds and memory, and the load average.
``--only NAME`` runs one probe (e.g. under ``py-spy record``).

``--short`` (run by ``make test`` through ``tests/procs/test_soak_edge.py``) uses small numbers
and short deadlines. The exit status is 1 if something did not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from harness.live_server import free_port

from soak.procs import START_SECONDS, Proc, SoakError, _clean_env, cli, wait_up

FILES = 2048
NORMAL = [f"127.0.0.{n}" for n in range(2, 10)]
LOG_LINES = 100
PAUSE = 0.025
"""Seconds a normal client waits between requests."""


@dataclass(frozen=True)
class Scale:
    slow_headers: int
    unfinished: int
    slow_bodies: int
    stalled: int
    header_seconds: float
    body_seconds: float
    write_seconds: float
    attack_seconds: float


LONG = Scale(1000, 5000, 100, 50, 10.0, 10.0, 10.0, 30.0)
SHORT = Scale(100, 600, 10, 5, 1.0, 1.0, 1.0, 4.0)


def _percentile(values: list[float], n: int) -> float:
    """The ``n``-th percentile of ``values`` (nan for fewer than two)."""
    if len(values) < 2:
        return float("nan")
    return statistics.quantiles(values, n=100)[n - 1]


@dataclass
class Normal:
    """Requests of normal clients from other addresses: (when, latency in s) and failures; and
    the prober's own lag: (when, how late its loop woke in s), so a slow prober shows as one."""

    latencies: list[tuple[float, float]] = field(default_factory=list)
    failures: int = 0
    lags: list[tuple[float, float]] = field(default_factory=list)

    def percentile(self, n: int, start: float = 0.0, end: float = float("inf")) -> float:
        return _percentile([lat for at, lat in self.latencies if start <= at < end], n)

    def p99(self, start: float = 0.0, end: float = float("inf")) -> float:
        return self.percentile(99, start, end)

    def lag(self, start: float = 0.0, end: float = float("inf")) -> float:
        """The prober's own p99 lag between ``start`` and ``end``."""
        return _percentile([lag for at, lag in self.lags if start <= at < end], 99)

    def line(self) -> str:
        return (
            f"normal clients: {len(self.latencies)} served, {self.failures} failed,"
            f" p50 {self.percentile(50) * 1000:.0f} ms, p99 {self.p99() * 1000:.0f} ms"
            f" (the prober's own loop late by {self.lag() * 1000:.0f} ms at p99)"
        )


@dataclass(frozen=True)
class Phase:
    """One probe's span (wall clock), the load average (1 min) at its start and end, and the
    server's CPU seconds in it (what the attack made it do, whatever else the machine runs)."""

    name: str
    start: float
    end: float
    load: tuple[float, float]
    cpu: float
    rss: tuple[float, float]

    def figures(self, seen: Normal) -> str:
        p50, p99 = seen.percentile(50, self.start, self.end), seen.p99(self.start, self.end)
        served = sum(1 for at, _ in seen.latencies if self.start <= at < self.end)
        return (
            f"{self.name}: p50 {p50 * 1000:.0f} / p99 {p99 * 1000:.0f} ms of {served}"
            f" (prober late {seen.lag(self.start, self.end) * 1000:.0f} ms;"
            f" server CPU {self.cpu:.1f} s in {self.end - self.start:.0f} s,"
            f" RSS {self.rss[0]:.0f}-{self.rss[1]:.0f} MB;"
            f" load {self.load[0]:.1f}-{self.load[1]:.1f})"
        )


def _rss_mb(pid: int | None) -> float:
    """Resident memory of process ``pid`` in MB (0 where /proc cannot tell)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    kb = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")), 0)
    return int(kb) / 1024


def _cpu_seconds(pid: int | None) -> float:
    """User and system CPU seconds process ``pid`` has used (0 where /proc cannot tell)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    name: str
    held: bool
    figures: str
    timing: bool = False
    """A speed figure: judged by the probe, not by the short form in ``make test``."""


async def _request(port: int, source: str, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        return await reader.read()
    finally:
        writer.close()


async def normal_clients(
    port: int, stop: Callable[[], bool], seen: Normal, served: Callable[[], None] = lambda: None
) -> None:
    """Normal clients at about 40 requests a second across 127.0.0.2-9 until ``stop()``, one
    request at a time on a new connection, as an outsider would ask."""
    n = 0
    while not stop():
        source = NORMAL[n % len(NORMAL)]
        path = "/healthz" if n % 2 else "/"
        n += 1
        started = time.monotonic()
        try:
            async with asyncio.timeout(5):
                answer = await _request(port, source, path)
            if not answer.startswith(b"HTTP/1.1 200"):
                raise OSError(answer[:40])
            seen.latencies.append((time.time(), time.monotonic() - started))
            served()
        except (OSError, TimeoutError):
            seen.failures += 1
        slept = time.monotonic()
        await asyncio.sleep(PAUSE)
        seen.lags.append((time.time(), max(0.0, time.monotonic() - slept - PAUSE)))


def _normal_process(port: int, stop: Any, ready: Any, out: Any) -> None:
    """The normal clients in a process of their own (the attackers' loop must not slow them),
    ahead of the others for the CPU where allowed: an outsider's prober has its own machine."""
    with contextlib.suppress(OSError):
        os.nice(-5)
    seen = Normal()
    asyncio.run(normal_clients(port, stop.is_set, seen, ready.set))
    out.send((seen.latencies, seen.failures, seen.lags))


async def _held_open(port: int, first: bytes, drip: bytes | None, bound: float) -> float | None:
    """Open a connection, send ``first``, then ``drip`` every second; seconds until the server
    closed it (None: still open after ``bound``)."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0.0
    try:
        writer.write(first)
        while time.monotonic() - started < bound:
            try:
                async with asyncio.timeout(1.0):
                    if not await reader.read(65536):
                        return time.monotonic() - started
            except TimeoutError:
                if drip is not None:
                    writer.write(drip)
            except OSError:
                return time.monotonic() - started
        return None
    finally:
        writer.close()


async def _closings(
    name: str, count: int, attempt: Callable[[], Awaitable[float | None]], deadline: str
) -> Result:
    """Run ``count`` attempts at once: held if the server closed every one."""
    times = await asyncio.gather(*(attempt() for _ in range(count)))
    closed = [t for t in times if t is not None]
    return Result(
        name,
        len(closed) == count,
        f"{len(closed)}/{count} closed, the last after {max(closed, default=0.0):.1f} s"
        f" ({deadline})",
    )


async def slow_headers(port: int, scale: Scale) -> Result:
    bound = scale.header_seconds + 5

    def one() -> Awaitable[float | None]:
        return _held_open(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-Drip: 1\r\n", bound)

    deadline = f"header deadline {scale.header_seconds:g} s"
    return await _closings("slow headers", scale.slow_headers, one, deadline)


async def unfinished(port: int, scale: Scale) -> Result:
    """Keep ``scale.unfinished`` half-sent requests going from one address for a while."""
    ends = time.monotonic() + scale.attack_seconds
    opened = 0

    async def hold() -> None:
        nonlocal opened
        while time.monotonic() < ends:
            opened += 1
            await _held_open(port, b"GET / HT", None, ends - time.monotonic())
            await asyncio.sleep(0.5)  # holding, not flooding: back once one is closed

    await asyncio.gather(*(hold() for _ in range(scale.unfinished)))
    return Result(
        "unfinished requests",
        True,  # judged by the normal clients and /healthz, below
        f"{scale.unfinished} held from 127.0.0.1 for {scale.attack_seconds:g} s"
        f" ({opened} connections opened)",
    )


async def slow_bodies(port: int, scale: Scale) -> Result:
    bound = scale.body_seconds + 5
    # The demo's simulated token endpoint reads its form before anything else.
    head = (
        b"POST /spotify-sim/api/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
    )

    def one() -> Awaitable[float | None]:
        return _held_open(port, head + b"grant_type=", None, bound)

    deadline = f"body deadline {scale.body_seconds:g} s"
    return await _closings("slow bodies", scale.slow_bodies, one, deadline)


async def stalled_readers(port: int, scale: Scale) -> Result:
    """Pipelined requests for the OpenAPI document, never read: the answers fill every buffer."""
    bound = scale.write_seconds + 10
    many = b"GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 400

    async def one() -> float | None:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1024)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            writer.write(many)
            transport = writer.transport
            assert isinstance(transport, asyncio.Transport)
            transport.pause_reading()  # read nothing: a full window
            while time.monotonic() - started < bound:
                await asyncio.sleep(0.5)
                if writer.transport.is_closing() or reader.at_eof():
                    return time.monotonic() - started
                with contextlib.suppress(OSError):
                    writer.write(b"\r\n")
                    await writer.drain()
            return None
        except OSError:
            return time.monotonic() - started
        finally:
            writer.close()

    deadline = f"write deadline {scale.write_seconds:g} s"
    return await _closings("stalled readers", scale.stalled, one, deadline)


def _server(tmp: Path, port: int, scale: Scale) -> Proc:
    env = {
        **_clean_env(),
        "NOWPLAYING_LOG_LEVEL": "WARNING",
        "NOWPLAYING_HEADER_SECONDS": str(scale.header_seconds),
        "NOWPLAYING_BODY_SECONDS": str(scale.body_seconds),
        "NOWPLAYING_WRITE_SECONDS": str(scale.write_seconds),
        "NOWPLAYING_PUBLIC_RATE_PER_SECOND": "0",
    }
    cmd = cli("serve", "--host", "127.0.0.1", "--port", str(port))
    prlimit = shutil.which("prlimit")
    if prlimit:
        cmd = [prlimit, f"--nofile={FILES}:{FILES}", *cmd]
    return Proc("server", cmd, env, tmp, tmp / "server.log")


def _warning_lines(log: Path) -> int:
    return sum(1 for line in log.read_text(errors="replace").splitlines() if "WARNING" in line)


PROBES: dict[str, Callable[[int, Scale], Awaitable[Result]]] = {
    "slow-headers": slow_headers,
    "unfinished": unfinished,
    "slow-bodies": slow_bodies,
    "stalled": stalled_readers,
}
"""The probes in the order they run, by the name ``--only`` takes."""


def _load() -> float:
    return os.getloadavg()[0]


async def run(scale: Scale, only: Collection[str] = ()) -> list[Result]:
    """Every probe (or those named in ``only``) against a fresh server; the results, then the
    normal clients', the log's."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attacker needs its sockets
    tmp = Path(tempfile.mkdtemp(prefix="nowplaying-edge-"))
    port = free_port()
    server = _server(tmp, port, scale)
    server.start()
    results: list[Result] = []
    try:
        async with httpx.AsyncClient() as http:
            await wait_up(http, server, f"http://127.0.0.1:{port}/healthz")
        before = _warning_lines(server.log)
        spawn = multiprocessing.get_context("spawn")
        stop, ready = spawn.Event(), spawn.Event()
        mine, theirs = spawn.Pipe()
        clients = spawn.Process(target=_normal_process, args=(port, stop, ready, theirs))
        clients.start()
        if not await asyncio.to_thread(ready.wait, START_SECONDS):  # measuring from the start
            raise SoakError("the normal clients were not served before the probes")
        phases: list[Phase] = []
        for name, probe in PROBES.items():
            if only and name not in only:
                continue
            pid = server.proc.pid if server.proc else None
            started, load, cpu, rss = time.time(), _load(), _cpu_seconds(pid), _rss_mb(pid)
            results.append(await probe(port, scale))
            used, span = _cpu_seconds(pid) - cpu, (started, time.time())
            phases.append(
                Phase(results[-1].name, *span, (load, _load()), used, (rss, _rss_mb(pid)))
            )
        healthz = await _request(port, "127.0.0.1", "/healthz")
        stop.set()
        latencies, failures, lags = await asyncio.to_thread(mine.recv)
        clients.join()
        seen = Normal(latencies, failures, lags)
        results.append(
            Result(
                "normal clients",
                seen.failures == 0 and healthz.startswith(b"HTTP/1.1 200"),
                seen.line() + f"; /healthz from the attacker's address {healthz[:15]!r}",
            )
        )
        worst = [seen.p99(phase.start, phase.end) for phase in phases]
        results.append(
            Result(
                "normal p99 < 100 ms",
                all(p99 < 0.1 for p99 in worst),  # in every phase (nan: none measured, failed)
                "\n".join(phase.figures(seen) for phase in phases),
                timing=True,
            )
        )
        lines = _warning_lines(server.log) - before
        results.append(Result("log", lines < LOG_LINES, f"{lines} warning lines written"))
        results.append(Result("server alive", server.alive, f"descriptor limit {FILES}"))
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return results


def render(results: list[Result]) -> str:
    """One line a result; a result's further lines of figures indented under it."""
    lines = []
    for r in results:
        first, *more = r.figures.split("\n")
        lines.append(f"{'held' if r.held else 'FAILED':6}  {r.name:20} {first}")
        lines.extend(f"{'':28} {line}" for line in more)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak edge", description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="small numbers, short deadlines")
    parser.add_argument(
        "--only", action="append", choices=list(PROBES), default=[], help="run this probe only"
    )
    args = parser.parse_args(argv)
    results = asyncio.run(run(SHORT if args.short else LONG, args.only))
    print(render(results))
    return 0 if all(r.held for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
