"""Fan-out: 10,000 SSE viewers of one public link on one server process, and one change.

A fresh ``nowplaying serve`` (demo mode, INFO log, no per-address rate limit on ``/p/...``: every
viewer comes from 127.0.0.1) is signed in and published. The bench raises its own soft
RLIMIT_NOFILE to the hard limit and opens ``VIEWERS`` connections on ``/p/{id}/events`` with a
lean raw-socket client (one :class:`asyncio.Protocol` each, no stream objects), in batches, each
one waiting for its first event. Then, ``CHANGES`` times, the simulator's ``/_control`` skip
changes the track; each viewer notes when the event with the new id arrived (``time.time()``).

*Published* is the earliest ``at`` (ms) the viewers' new events carry: the server stamps it when
it encodes the change, right after the poller publishes it; the latency of a viewer is its arrival
minus that moment (the poll delay before it is not counted). *CPU per change* is the server's
utime + stime from the skip until the last viewer has the event, minus what the same time costs
idle (measured just before, viewers connected). *Bytes per viewer* is the event's chunk as the
viewer received it. RSS is ``VmRSS`` before any viewer and :data:`MEASURE_AFTER_SECONDS` after
the last one connected; viewers connect :data:`BATCH` at a time and read their streams throughout,
as the independent raw-socket client of issue 22 does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from harness.helpers import ONE_ADDRESS_AUDIENCE
from harness.servers import CONTROL, nowplaying_server, published_events

VIEWERS = 10_000
BATCH = 250
CHANGES = 3
CONNECT_SECONDS = 240.0
CHANGE_SECONDS = 20.0
IDLE_SECONDS = 3.0
SETTLE_SECONDS = 2.0
MEASURE_AFTER_SECONDS = 10.0
"""RSS is read this long after the last viewer connected, as an outside observer would: memory
a connection costs after its first event (buffers, the stream's state) counts too."""
SEED = 11


def raise_nofile() -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Viewer(asyncio.Protocol):
    """One SSE connection: parses the chunked body, keeps the last event's id, time and size."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.text = ""
        self.head_done = False
        self.status = 0
        self.last_id: str | None = None
        self.last_data: str = ""
        self.last_at: float = 0.0
        self.last_bytes = 0
        self.events = 0
        self.closed = False
        self.arrived = asyncio.Event()
        self._chunk_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.head_done:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.buffer[9:12])
            del self.buffer[: end + 4]
            self.head_done = True
        while True:
            eol = self.buffer.find(b"\r\n")
            if eol < 0:
                return
            size = int(self.buffer[:eol].split(b";")[0], 16)
            if len(self.buffer) < eol + 2 + size + 2:
                return
            body = bytes(self.buffer[eol + 2 : eol + 2 + size])
            self._chunk_bytes += eol + 2 + size + 2
            del self.buffer[: eol + 2 + size + 2]
            if size == 0:
                return
            self.text += body.decode()
            while "\n\n" in self.text:
                block, self.text = self.text.split("\n\n", 1)
                if "data: " in block:
                    self._event(block)
                self._chunk_bytes = 0

    def _event(self, block: str) -> None:
        event_id, data = None, ""
        for line in block.split("\n"):
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data = line[6:]
        self.last_at = time.time()
        self.last_id, self.last_data = event_id, data
        self.last_bytes = self._chunk_bytes
        self.events += 1
        self.arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.arrived.set()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class Change:
    published: float
    latencies: list[float]
    missed: int
    cpu_seconds: float
    bytes_per_viewer: int

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))]


@dataclass
class Result:
    wanted: int
    viewers: int
    connect_seconds: float
    idle_kb: int
    loaded_kb: int
    fd_limit_log: str
    changes: list[Change] = field(default_factory=list)
    refused: int = 0

    @property
    def per_viewer_kb(self) -> float:
        return (self.loaded_kb - self.idle_kb) / max(1, self.viewers)


async def open_viewers(
    port: int,
    path: str,
    viewers: int,
    *,
    sources: Sequence[str] = (),
    seconds: float = CONNECT_SECONDS,
    batch_size: int = BATCH,
) -> tuple[list[Viewer], int]:
    """``viewers`` SSE connections to ``path``, ``batch_size`` at a time, each waiting for its
    first event; from the loopback ``sources`` in turn (one address holds ~28k ports), or from
    127.0.0.1. The live ones, and how many failed."""
    loop = asyncio.get_running_loop()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    opened: list[Viewer] = []
    refused = 0
    deadline = time.monotonic() + seconds
    for start in range(0, viewers, batch_size):
        batch = [Viewer(request) for _ in range(min(batch_size, viewers - start))]
        results = await asyncio.gather(
            *(
                loop.create_connection(
                    lambda v=v: v,
                    "127.0.0.1",
                    port,
                    local_addr=(sources[(start + n) % len(sources)], 0) if sources else None,
                )
                for n, v in enumerate(batch)
            ),
            return_exceptions=True,
        )
        ok = [v for v, r in zip(batch, results, strict=True) if not isinstance(r, BaseException)]
        refused += len(batch) - len(ok)
        opened += ok
        left = max(0.1, deadline - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(v.arrived.wait() for v in ok)), left)
        if time.monotonic() > deadline or refused:
            break
    live = [v for v in opened if v.events and not v.closed and v.status == 200]
    for v in opened:
        if v not in live:
            v.close()
    return live, refused + len(opened) - len(live)


async def measure_change(
    cpu: Callable[[], float], viewers: list[Viewer], http: httpx.AsyncClient
) -> Change:
    """Skip the demo's track and wait until every viewer has the new event; ``cpu`` is the CPU
    time of the processes that carry it (their idle rate taken off)."""
    before = {id(v): v.last_id for v in viewers}
    for v in viewers:
        v.arrived.clear()
    cpu_idle0 = cpu()
    await asyncio.sleep(IDLE_SECONDS)
    idle_rate = (cpu() - cpu_idle0) / IDLE_SECONDS
    for v in viewers:
        v.arrived.clear()
    cpu0, t0 = cpu(), time.monotonic()
    skipped = await http.post(f"{CONTROL}/skip")
    skipped.raise_for_status()
    deadline = time.monotonic() + CHANGE_SECONDS
    while time.monotonic() < deadline:
        if all(v.last_id != before[id(v)] for v in viewers):
            break
        await asyncio.sleep(0.01)
    cpu1, t1 = cpu(), time.monotonic()
    got = [v for v in viewers if v.last_id != before[id(v)]]
    stamps = [json.loads(v.last_data).get("at") for v in got]
    published = min(s for s in stamps if isinstance(s, int)) / 1000 if got else float("nan")
    return Change(
        published=published,
        latencies=[v.last_at - published for v in got],
        missed=len(viewers) - len(got),
        cpu_seconds=max(0.0, (cpu1 - cpu0) - idle_rate * (t1 - t0)),
        bytes_per_viewer=int(statistics.median(v.last_bytes for v in got)) if got else 0,
    )


def _fd_line(log: Path) -> str:
    found = re.findall(r"file descriptors: [^\n]*", log.read_text(errors="replace"))
    return found[-1] if found else "(no file-descriptor line in the server log)"


async def run(viewers: int = VIEWERS) -> Result:
    raise_nofile()
    rng = random.Random(SEED)
    env = {**ONE_ADDRESS_AUDIENCE, "NOWPLAYING_LOG_LEVEL": "INFO"}
    with nowplaying_server(extra_env=env) as server:
        path = await published_events(server.url)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            await asyncio.sleep(SETTLE_SECONDS)
            idle = server.rss_kb()
            port = int(server.url.rsplit(":", 1)[1])
            started = time.monotonic()
            live, refused = await open_viewers(port, path, viewers)
            connect = time.monotonic() - started
            try:
                await asyncio.sleep(MEASURE_AFTER_SECONDS)
                loaded = server.rss_kb()
                result = Result(
                    viewers, len(live), connect, idle, loaded, _fd_line(server.log), refused=refused
                )
                for _ in range(CHANGES):
                    await asyncio.sleep(rng.uniform(0.0, 2.0))
                    result.changes.append(await measure_change(server.cpu_seconds, live, http))
            finally:
                for v in live:
                    v.close()
    return result
