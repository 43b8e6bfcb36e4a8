"""GRIP fan-out: N SSE viewers of one public link held by Pushpin, nowplaying publishing once.

Debian's Pushpin runs the shipped ``deploy/pushpin/`` files (ports, paths, key and cap changed)
in front of a fresh ``nowplaying serve`` in GRIP mode (demo, no per-address limits: Pushpin is
the one address nowplaying sees). Every process here has a hard RLIMIT_NOFILE (20,000 on the
machine of docs/performance.md) that it cannot raise, and each held viewer is one descriptor in
its Pushpin's connection manager (condure) and one in the client holding it. So past one
process's worth the bench goes the way docs/deploy.md ships ("Fan-out past one process"):
:func:`plan` starts as many Pushpin instances as needed, each holding at most the hard limit less
:data:`SPARE`, nowplaying publishes each change to all of them, and the load client runs in as
many processes (:func:`_client`), process ``i`` holding the viewers of Pushpin ``i``.

Each client process raises its soft RLIMIT_NOFILE to the hard limit and opens its viewers with
:mod:`bench.fanout`'s raw-socket client, :data:`BATCH` at a time, each waiting for its first event
and reading its stream throughout, from the loopback addresses 127.0.0.2-127.0.0.9 in turn (one
source address holds about 28,000 ports). RSS is the sum over every Pushpin's processes (runner,
condure, zurl, proxy, handler) and nowplaying's, before any viewer and
:data:`~bench.fanout.MEASURE_AFTER_SECONDS` after the last one connected. Then ``CHANGES`` times
the simulator's skip changes the track; a viewer's latency is its arrival minus the ``at`` the
event carries (when nowplaying framed it), as in ``bench fanout``, over all client processes
(one machine, one clock). CPU per change is every Pushpin's and nowplaying's together, their idle
rate taken off.

``BENCH_GRIP_VIEWERS`` sets the count (default :data:`AIM`), ``BENCH_GRIP_MOST`` the most one
instance holds (default: the descriptor limit less :data:`SPARE`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import random
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
from harness.helpers import ONE_ADDRESS_AUDIENCE
from harness.live_server import free_port
from harness.pushpin import Pushpin, grip_settings, run_pushpin
from harness.servers import CONTROL, ServerProcess, nowplaying_server, published_events

from bench.fanout import (
    CHANGE_SECONDS,
    CHANGES,
    IDLE_SECONDS,
    MEASURE_AFTER_SECONDS,
    SEED,
    SETTLE_SECONDS,
    Change,
    Viewer,
    open_viewers,
    raise_nofile,
)

AIM = 100_000
SPARE = 1_000
"""Descriptors left to each process for everything but the viewers."""
SOURCES = tuple(f"127.0.0.{n}" for n in range(2, 10))
CONNECT_SECONDS = 900.0
BATCH = 80
"""Viewers connecting at once to one Pushpin: its proxy answers 502 to new requests past about
100 in flight to zurl at the same moment (measured: 101 of a burst of 200 got through)."""
LOG_LEVEL = 1
"""Pushpin's log level here: warnings only (the shipped 2 writes three lines per viewer, which
at 100,000 viewers is CPU the two cores have better uses for)."""
TRIES = 3
"""Rounds a client process makes to open the viewers that failed (a 502 now and then)."""


@dataclass
class Result:
    wanted: int
    pushpins: int
    """Pushpin instances (and client processes)."""
    most: int
    """The most one instance (and one client process) was to hold."""
    viewers: int
    refused: int
    connect_seconds: float
    idle_kb: tuple[int, int]
    """Every Pushpin's and nowplaying's RSS before any viewer."""
    loaded_kb: tuple[int, int]
    """The same with the viewers connected."""
    processes: dict[str, int] = field(default_factory=dict)
    """Pushpin's RSS (KB) by process name, summed over the instances, with the viewers."""
    instances: list[int] = field(default_factory=list)
    """Each Pushpin instance's RSS (KB) with the viewers."""
    client_kb: int = 0
    """The client processes' RSS with the viewers (not part of the figure)."""
    changes: list[Change] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)
    """The 1-minute load average when connecting began and after the last change."""
    died: list[str] = field(default_factory=list)
    """The Pushpin instances that ended during the run: where their log was kept."""

    def per_viewer_kb(self) -> float:
        return (sum(self.loaded_kb) - sum(self.idle_kb)) / max(1, self.viewers)


def per_process() -> int:
    """How many viewers one Pushpin instance (and one client process) holds here."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1] - SPARE


def plan(viewers: int, most: int | None = None) -> list[int]:
    """How many viewers each Pushpin instance and client process holds: as few instances as
    the descriptor limit (or ``most`` a process) allows, the viewers spread evenly."""
    count = max(1, math.ceil(viewers / (most or per_process())))
    return [viewers // count + (1 if i < viewers % count else 0) for i in range(count)]


def cpu_of(pushpins: list[Pushpin], server: ServerProcess) -> float:
    return sum(p.cpu_seconds() for p in pushpins) + server.cpu_seconds()


# -- the load client, one process per Pushpin instance --------------------------------------------


def _client(conn: Connection) -> None:
    """A client process: opens viewers, reports the events they get, on the parent's word."""
    asyncio.run(_serve(conn))


async def _serve(conn: Connection) -> None:
    raise_nofile()
    live: list[Viewer] = []
    before: dict[int, str | None] = {}
    while True:
        command, *args = await asyncio.to_thread(conn.recv)
        if command == "open":
            port, path, count = args
            refused = 0
            for _ in range(TRIES):
                more, failed = await open_viewers(
                    port,
                    path,
                    count - len(live),
                    sources=SOURCES,
                    seconds=CONNECT_SECONDS,
                    batch_size=BATCH,
                )
                live += more
                refused += failed
                if len(live) >= count:
                    break
            conn.send((len(live), refused, _rss_kb()))
        elif command == "arm":
            before = {id(v): v.last_id for v in live}
            conn.send(True)
        elif command == "collect":
            deadline = time.monotonic() + CHANGE_SECONDS
            while time.monotonic() < deadline:
                if all(v.last_id != before[id(v)] for v in live):
                    break
                await asyncio.sleep(0.01)
            got = [v for v in live if v.last_id != before[id(v)]]
            stamps = [json.loads(v.last_data).get("at") for v in got]
            conn.send(
                (
                    [v.last_at for v in got],
                    [s for s in stamps if isinstance(s, int)],
                    len(live) - len(got),
                    [v.last_bytes for v in got],
                )
            )
        else:
            for v in live:
                v.close()
            conn.send(True)
            return


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Clients:
    """The client processes (spawned, so none inherits the parent's event loop)."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for _ in range(count):
            ours, theirs = context.Pipe()
            proc = context.Process(target=_client, args=(theirs,), daemon=True)
            proc.start()
            self.conns.append(ours)
            self.procs.append(proc)

    async def ask(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send each process its command; their answers, in order."""
        for conn, command in zip(self.conns, commands, strict=True):
            conn.send(command)
        return list(await asyncio.gather(*(asyncio.to_thread(c.recv) for c in self.conns)))

    async def close(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            await self.ask([("close",)] * len(self.conns))
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


async def measure(
    clients: Clients, pushpins: list[Pushpin], server: ServerProcess, http: httpx.AsyncClient
) -> Change:
    """Skip the demo's track and wait until every viewer in every client has the new event."""
    await clients.ask([("arm",)] * len(clients.conns))
    cpu_idle0 = cpu_of(pushpins, server)
    await asyncio.sleep(IDLE_SECONDS)
    idle_rate = (cpu_of(pushpins, server) - cpu_idle0) / IDLE_SECONDS
    cpu0, t0 = cpu_of(pushpins, server), time.monotonic()
    for conn in clients.conns:
        conn.send(("collect",))
    (await http.post(f"{CONTROL}/skip")).raise_for_status()
    answers = await asyncio.gather(*(asyncio.to_thread(c.recv) for c in clients.conns))
    cpu1, t1 = cpu_of(pushpins, server), time.monotonic()
    arrivals = [a for answer in answers for a in answer[0]]
    stamps = [s for answer in answers for s in answer[1]]
    published = min(stamps) / 1000 if stamps else float("nan")
    sizes = [b for answer in answers for b in answer[3]]
    return Change(
        published=published,
        latencies=[a - published for a in arrivals],
        missed=sum(answer[2] for answer in answers),
        cpu_seconds=max(0.0, (cpu1 - cpu0) - idle_rate * (t1 - t0)),
        bytes_per_viewer=int(statistics.median(sizes)) if sizes else 0,
    )


def _load() -> float:
    return os.getloadavg()[0]


async def run(viewers: int | None = None, most: int | None = None) -> Result:
    """The figure for ``viewers`` (``BENCH_GRIP_VIEWERS``, :data:`AIM`), at most ``most`` a
    Pushpin instance and client process (default: what the descriptor limit allows)."""
    raise_nofile()
    wanted = viewers if viewers is not None else int(os.environ.get("BENCH_GRIP_VIEWERS", AIM))
    most = most or int(os.environ.get("BENCH_GRIP_MOST", "0")) or None
    shares = plan(wanted, most)
    rng = random.Random(SEED)
    port = free_port()
    origin = f"127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(
            run_pushpin(origin, maxconn=shares[0] + SPARE, log_level=LOG_LEVEL)
        )
        pushpins = [first] + [
            stack.enter_context(
                run_pushpin(origin, maxconn=share + SPARE, key=first.key, log_level=LOG_LEVEL)
            )
            for share in shares[1:]
        ]
        env = {**grip_settings(pushpins), **ONE_ADDRESS_AUDIENCE, "NOWPLAYING_LOG_LEVEL": "INFO"}
        server = stack.enter_context(nowplaying_server(port=port, extra_env=env))
        path = await published_events(server.url)
        clients = Clients(len(pushpins))
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                # No change while viewers connect (minutes at 100,000): the demo's track would
                # end meanwhile, and Pushpin 1.36's handlers crashed (SIGSEGV) within a minute
                # of a change published amid thousands of new holds, in 3 runs of 3.
                (await http.post(f"{CONTROL}/pause")).raise_for_status()
                await asyncio.sleep(SETTLE_SECONDS)
                idle = (sum(p.rss_kb() for p in pushpins), server.rss_kb())
                load0 = _load()
                started = time.monotonic()
                opened = await clients.ask(
                    [("open", p.http_port, path, n) for p, n in zip(pushpins, shares, strict=True)]
                )
                connect = time.monotonic() - started
                await asyncio.sleep(MEASURE_AFTER_SECONDS)
                loaded = (sum(p.rss_kb() for p in pushpins), server.rss_kb())
                result = Result(
                    wanted,
                    len(pushpins),
                    most or per_process(),
                    sum(o[0] for o in opened),
                    sum(o[1] for o in opened),
                    connect,
                    idle,
                    loaded,
                    client_kb=sum(o[2] for o in opened),
                    instances=[p.rss_kb() for p in pushpins],
                )
                for p in pushpins:
                    for name, kb in p.rss_by_process().items():
                        result.processes[name] = result.processes.get(name, 0) + kb
                for _ in range(CHANGES):
                    await asyncio.sleep(rng.uniform(0.0, 2.0))
                    result.changes.append(await measure(clients, pushpins, server, http))
                result.load = (load0, _load())
                result.died = _kept_logs(pushpins)
        finally:
            await clients.close()
    return result


def _kept_logs(pushpins: list[Pushpin]) -> list[str]:
    """Copies of the logs of the instances that ended (a crash), which their own temporary
    directories do not outlive."""
    kept = []
    for n, p in enumerate(pushpins):
        if p.proc.poll() is not None:
            path = Path(tempfile.gettempdir()) / f"bench-grip-pushpin-{os.getpid()}-{n}.log"
            path.write_text(p.log())
            kept.append(f"instance {n} ended (exit {p.proc.returncode}): log in {path}")
    return kept


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def lines(r: Result) -> list[str]:
    """The section's lines in the bench table."""
    reached = "" if r.viewers == r.wanted else f" (of {r.wanted} asked for: {r.refused} failed)"
    out = [
        f"GRIP fan-out: {r.viewers} SSE viewers of one public link held by {r.pushpins}"
        f" Pushpin instance{'s' if r.pushpins > 1 else ''}{reached}",
        f"   at most {r.most} viewers a process (the hard RLIMIT_NOFILE less {SPARE} allows"
        f" {per_process()}): {r.pushpins} Pushpin(s) and {r.pushpins} client process(es)",
        f"   connected in {r.connect_seconds:.0f} s from {SOURCES[0]}-{SOURCES[-1]};"
        f" load average {r.load[0]:.1f} then, {r.load[1]:.1f} after the last change",
        "",
        f"   {'RSS':<30}{'Pushpin':>10}{'nowplaying':>12}{'both':>10}",
        f"   {'idle (signed in, polling)':<30}{r.idle_kb[0] / 1024:>7.1f} MB"
        f"{r.idle_kb[1] / 1024:>9.1f} MB{sum(r.idle_kb) / 1024:>7.1f} MB",
        f"   {f'with {r.viewers} viewers':<30}{r.loaded_kb[0] / 1024:>7.1f} MB"
        f"{r.loaded_kb[1] / 1024:>9.1f} MB{sum(r.loaded_kb) / 1024:>7.1f} MB",
        f"   {'per viewer':<30}{r.per_viewer_kb():>26.1f} KB",
        "   Pushpin by process (all instances): "
        + ", ".join(f"{name} {kb / 1024:.1f} MB" for name, kb in sorted(r.processes.items())),
        "   by instance: " + ", ".join(f"{kb / 1024:.0f} MB" for kb in r.instances),
        f"   (the load client's processes: {r.client_kb / 1024:.0f} MB, not counted)",
        "",
        f"   {'published -> viewer':<22}{'viewers':>8}{'missed':>8}{'median':>10}{'p95':>10}"
        f"{'max':>10}{'CPU/change':>12}",
    ]
    for i, c in enumerate(r.changes, 1):
        out.append(
            f"   {f'change {i}':<22}{len(c.latencies):>8}{c.missed:>8}"
            f"{_s(c.quantile(0.5)):>10}{_s(c.quantile(0.95)):>10}{_s(c.quantile(1.0)):>10}"
            f"{c.cpu_seconds:>10.2f} s"
        )
    out.append("   CPU/change: every Pushpin's processes and nowplaying together")
    out += [f"   {line}" for line in r.died]
    return [*out, ""]
