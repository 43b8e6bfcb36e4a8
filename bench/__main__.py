"""``python -m bench [section ...]``: run the benchmarks, print one table, write the doc.

With no sections, all of them run in one go and ``docs/performance.md`` is rewritten with the
printed table; with some, only those run and the doc is left alone.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from bench import (
    budget,
    edge,
    fanout,
    grip,
    instructions,
    latency,
    memory,
    multi,
    push,
    share,
    sources,
    throughput,
    upstream,
)
from bench.report import DOC, Machine, Results, table, write_doc

SECTIONS: dict[str, tuple[str, Callable[[], Awaitable[Any]]]] = {
    "upstream": ("upstream calls per simulated minute (~30 s)", upstream.run),
    "latency": ("change-to-viewer latency (~2 min)", latency.run),
    "throughput": ("throughput against nginx serving the same bytes (~2 min)", throughput.run),
    "memory": ("memory with 1000 SSE viewers (~15 s)", memory.run),
    "multi": ("multi-instance: 3 processes, PostgreSQL + Redis (~75 s)", multi.run),
    "fanout": ("fan-out: 10,000 SSE viewers of one public link, 3 changes (~2 min)", fanout.run),
    "edge": ("edge cache: wrk through nginx proxy_cache on one public URL (~25 s)", edge.run),
    "budget": ("call budget and adaptive polling, fixed schedule beside it (~40 s)", budget.run),
    "instructions": ("instructions per request under valgrind (~2 min)", instructions.run),
    "push": ("push -> 1,000 SSE viewers, 10 pushes (~20 s)", push.run),
    "share": ("PNG cards: render time, req/s against the SVG (~30 s)", share.run),
    "grip": ("GRIP fan-out: up to 100,000 SSE viewers held by Pushpin (~5-15 min)", grip.run),
    "sources": ("Last.fm and ListenBrainz pulled for watched widgets (~4 min)", sources.run),
}


async def _run(names: list[str]) -> tuple[Results, list[str]]:
    results = Results()
    failed = []
    started = time.monotonic()
    for i, name in enumerate(names, 1):
        title, run = SECTIONS[name]
        print(f"[{i}/{len(names)}] {title}", file=sys.stderr, flush=True)
        try:
            setattr(results, name, await run())
        except Exception:  # one broken section must not hide the others' numbers
            traceback.print_exc()
            failed.append(name)
    results.seconds = time.monotonic() - started
    return results, failed


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("sections", nargs="*", metavar="section", help=", ".join(SECTIONS))
    names = parser.parse_args().sections or list(SECTIONS)
    if unknown := [n for n in names if n not in SECTIONS]:
        parser.error(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    machine = Machine.here()
    results, failed = asyncio.run(_run(names))
    printed = table(results, machine)
    print(printed)
    if failed:
        print(f"failed: {', '.join(failed)}; {DOC.name} not written", file=sys.stderr)
        return 1
    if len(names) == len(SECTIONS):
        write_doc(printed, machine)
        print(f"written: {DOC.relative_to(DOC.parent.parent)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
