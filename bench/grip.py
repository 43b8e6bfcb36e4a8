"""GRIP fan-out: N SSE viewers of one public link held by Pushpin, nowplaying publishing once.

Debian's Pushpin runs the shipped ``deploy/pushpin/`` files (ports, paths, key and cap changed)
in front of a fresh ``nowplaying serve`` in GRIP mode (demo, no per-address limits: Pushpin is
the one address nowplaying sees). The bench raises its soft RLIMIT_NOFILE to the hard limit and
opens the viewers on Pushpin's port with :mod:`bench.fanout`'s raw-socket client,
:data:`BATCH` at a time, each waiting for its first event, from the loopback
addresses 127.0.0.2-127.0.0.9 in turn (one source address holds about 28,000 ports). Then
``CHANGES`` times the simulator's skip changes the track; a viewer's latency is its arrival minus
the ``at`` the event carries (when nowplaying framed it), as in ``bench fanout``.

The aim is 100,000 viewers. Each held viewer is one descriptor in Pushpin's connection manager
(condure) and one in this client, so the count is capped below the hard RLIMIT_NOFILE that every
process here has (less :data:`SPARE` for the rest); the table says when the cap applied and why.
RSS is the sum over Pushpin's processes (runner, condure, zurl, proxy, handler) and nowplaying's,
before any viewer and :data:`~bench.fanout.MEASURE_AFTER_SECONDS` after the last connected;
CPU per change is both together, their idle rate taken off.
"""

from __future__ import annotations

import asyncio
import random
import resource
import time
from dataclasses import dataclass, field

import httpx
from harness.helpers import ONE_ADDRESS_AUDIENCE
from harness.live_server import free_port
from harness.pushpin import Pushpin, run_pushpin
from harness.servers import ServerProcess, nowplaying_server, published_events

from bench.fanout import (
    CHANGES,
    MEASURE_AFTER_SECONDS,
    SEED,
    SETTLE_SECONDS,
    Change,
    measure_change,
    open_viewers,
    raise_nofile,
)

AIM = 100_000
SPARE = 1_000
"""Descriptors left to each process for everything but the viewers."""
SOURCES = tuple(f"127.0.0.{n}" for n in range(2, 10))
CONNECT_SECONDS = 600.0
BATCH = 80
"""Viewers connecting at once: Pushpin's proxy answers 502 to new requests past about 100 in
flight to zurl at the same moment (measured: 101 of a burst of 200 got through)."""


@dataclass
class Result:
    wanted: int
    cap: str
    """Why fewer than :data:`AIM` were asked for (empty: not capped)."""
    viewers: int
    refused: int
    connect_seconds: float
    idle_kb: tuple[int, int]
    """Pushpin's and nowplaying's RSS before any viewer."""
    loaded_kb: tuple[int, int]
    """The same with the viewers connected."""
    processes: dict[str, int] = field(default_factory=dict)
    """Pushpin's RSS (KB) by process, with the viewers connected."""
    changes: list[Change] = field(default_factory=list)

    def per_viewer_kb(self) -> float:
        return (sum(self.loaded_kb) - sum(self.idle_kb)) / max(1, self.viewers)


def reachable(aim: int = AIM) -> tuple[int, str]:
    """How many viewers this machine lets one Pushpin and one client hold, and why if fewer."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard - SPARE >= aim:
        return aim, ""
    return hard - SPARE, (
        f"capped: RLIMIT_NOFILE hard limit {hard} per process here (not raisable without"
        " CAP_SYS_RESOURCE); each held viewer is a descriptor in Pushpin's condure and in"
        " the client"
    )


def cpu_of(pushpin: Pushpin, server: ServerProcess) -> float:
    return pushpin.cpu_seconds() + server.cpu_seconds()


async def run(viewers: int | None = None) -> Result:
    raise_nofile()
    wanted, cap = reachable() if viewers is None else (viewers, "")
    rng = random.Random(SEED)
    port = free_port()
    with run_pushpin(f"127.0.0.1:{port}", maxconn=wanted + SPARE) as pushpin:
        env = {**pushpin.settings(), **ONE_ADDRESS_AUDIENCE, "NOWPLAYING_LOG_LEVEL": "INFO"}
        with nowplaying_server(port=port, extra_env=env) as server:
            path = await published_events(server.url)
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                await asyncio.sleep(SETTLE_SECONDS)
                idle = (pushpin.rss_kb(), server.rss_kb())
                started = time.monotonic()
                live, refused = await open_viewers(
                    pushpin.http_port,
                    path,
                    wanted,
                    sources=SOURCES,
                    seconds=CONNECT_SECONDS,
                    batch_size=BATCH,
                )
                connect = time.monotonic() - started
                try:
                    await asyncio.sleep(MEASURE_AFTER_SECONDS)
                    loaded = (pushpin.rss_kb(), server.rss_kb())
                    result = Result(wanted, cap, len(live), refused, connect, idle, loaded)
                    result.processes = pushpin.rss_by_process()
                    for _ in range(CHANGES):
                        await asyncio.sleep(rng.uniform(0.0, 2.0))
                        result.changes.append(
                            await measure_change(lambda: cpu_of(pushpin, server), live, http)
                        )
                finally:
                    for v in live:
                        v.close()
    return result


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def lines(r: Result) -> list[str]:
    """The section's lines in the bench table."""
    reached = "" if r.viewers == r.wanted else f" (of {r.wanted} asked for: {r.refused} failed)"
    out = [
        f"GRIP fan-out: {r.viewers} SSE viewers of one public link held by Pushpin{reached}",
        f"   aim {AIM}; {r.cap or 'not capped'}",
        f"   connected in {r.connect_seconds:.0f} s from {SOURCES[0]}-{SOURCES[-1]}",
        "",
        f"   {'RSS':<30}{'Pushpin':>10}{'nowplaying':>12}{'both':>10}",
        f"   {'idle (signed in, polling)':<30}{r.idle_kb[0] / 1024:>7.1f} MB"
        f"{r.idle_kb[1] / 1024:>9.1f} MB{sum(r.idle_kb) / 1024:>7.1f} MB",
        f"   {f'with {r.viewers} viewers':<30}{r.loaded_kb[0] / 1024:>7.1f} MB"
        f"{r.loaded_kb[1] / 1024:>9.1f} MB{sum(r.loaded_kb) / 1024:>7.1f} MB",
        f"   {'per viewer':<30}{r.per_viewer_kb():>26.1f} KB",
        "   Pushpin by process: "
        + ", ".join(f"{name} {kb / 1024:.1f} MB" for name, kb in sorted(r.processes.items())),
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
    out.append("   CPU/change: Pushpin's processes and nowplaying together")
    return [*out, ""]
