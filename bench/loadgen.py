"""A load generator for one trial: ``python -m bench.loadgen URL [--header H] ...``.

It runs in its own process (the server has its own too), opens ``--connections`` keep-alive
HTTP/1.1 connections on raw asyncio sockets, and sends requests back to back on each for
``--seconds`` after a short warm-up. It prints one JSON line: requests, errors, req/s, latencies.
Raw sockets rather than an HTTP client library, so the generator is not the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import time
from pathlib import Path
from urllib.parse import urlsplit

MAX_SECONDS = 30.0


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) used so far by process ``pid``, or by this process if None."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request_for(url: str, headers: list[str]) -> bytes:
    """The bytes of a keep-alive ``GET url`` with these extra header lines."""
    parts = urlsplit(url)
    lines = [f"GET {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 response off a keep-alive connection (head, then a ``Content-Length``
    body); its status code, e.g. ``b"200"``."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return head.split(b" ", 2)[1]


async def _connection(
    *,
    host: str,
    port: int,
    request: bytes,
    until: float,
    warm_until: float,
    out: dict[str, list[float]],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (started := time.perf_counter()) < until:
            writer.write(request)
            status = await read_response(reader)
            if started < warm_until:
                continue
            out["ok" if status == b"200" else "errors"].append(time.perf_counter() - started)
    finally:
        writer.close()


async def _window(pid: int | None, warmup: float, seconds: float) -> dict[str, float]:
    """CPU used by the server and by this process during the measured window, in cores."""
    await asyncio.sleep(warmup)
    server, own = cpu_seconds(pid) if pid else 0.0, cpu_seconds(None)
    await asyncio.sleep(seconds)
    return {
        "server_cpu": (cpu_seconds(pid) - server) / seconds if pid else 0.0,
        "client_cpu": (cpu_seconds(None) - own) / seconds,
    }


async def run(
    url: str,
    headers: list[str],
    *,
    connections: int,
    seconds: float,
    warmup: float,
    server_pid: int | None = None,
) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = request_for(url, headers)
    out: dict[str, list[float]] = {"ok": [], "errors": []}
    start = time.perf_counter()
    seconds = min(seconds, MAX_SECONDS)
    warm_until, until = start + warmup, start + warmup + seconds
    window = asyncio.create_task(_window(server_pid, warmup, seconds))
    await asyncio.gather(
        *(
            _connection(
                host=host, port=port, request=request, until=until, warm_until=warm_until, out=out
            )
            for _ in range(connections)
        ),
    )
    cpu = await window
    ok = sorted(out["ok"])
    return {
        **cpu,
        "requests": len(ok),
        "errors": len(out["errors"]),
        "seconds": seconds,
        "rps": len(ok) / seconds,
        "p50_ms": 1000 * statistics.median(ok) if ok else 0.0,
        "p99_ms": 1000 * ok[int(len(ok) * 0.99)] if ok else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--connections", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--server-pid", type=int, help="report this process's CPU use too")
    args = parser.parse_args()
    if urlsplit(args.url).hostname != "127.0.0.1":
        parser.error("the load generator only targets 127.0.0.1")
    result = asyncio.run(
        run(
            args.url,
            args.header,
            connections=args.connections,
            seconds=args.seconds,
            warmup=args.warmup,
            server_pid=args.server_pid,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
