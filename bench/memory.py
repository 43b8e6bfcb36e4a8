"""The server's resident memory with 1000 SSE viewers open.

A fresh server process (demo mode, one account signed in, its poller running) is measured idle,
then with ``VIEWERS`` connections on ``/api/spotify/events``, each one having received its first
event. RSS is ``VmRSS`` from ``/proc/PID/status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from dataclasses import dataclass

import httpx
from harness.helpers import ONE_ADDRESS_AUDIENCE
from harness.servers import nowplaying_server, sign_in

from bench.servers import SSEClient

VIEWERS = 1000
BATCH = 100  # connections opened at once, well under the listen backlog
FIRST_EVENT_SECONDS = 60.0
SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class Result:
    viewers: int
    idle_kb: int
    loaded_kb: int

    @property
    def per_viewer_kb(self) -> float:
        return (self.loaded_kb - self.idle_kb) / self.viewers


def _enough_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


async def run(viewers: int = VIEWERS) -> Result:
    _enough_files(viewers + 256)
    # every viewer connects from 127.0.0.1: the per-address cap would refuse all but a few
    with nowplaying_server(extra_env=ONE_ADDRESS_AUDIENCE) as server:
        cookie = await sign_in(server.url)
        async with httpx.AsyncClient(base_url=server.url) as http:
            warm = await http.get("/api/spotify", headers={"Cookie": cookie})
        if warm.status_code != 200:
            raise RuntimeError(f"/api/spotify answered {warm.status_code}")
        await asyncio.sleep(SETTLE_SECONDS)
        idle = server.rss_kb()
        port = int(server.url.rsplit(":", 1)[1])
        clients = [SSEClient("127.0.0.1", port, cookie) for _ in range(viewers)]
        tasks: list[asyncio.Task[None]] = []
        try:
            deadline = time.monotonic() + FIRST_EVENT_SECONDS
            for start in range(0, viewers, BATCH):
                batch = clients[start : start + BATCH]
                tasks += [asyncio.create_task(c.run()) for c in batch]
                remaining = deadline - time.monotonic()
                await asyncio.wait_for(
                    asyncio.gather(*(c.arrived.wait() for c in batch)), max(0.1, remaining)
                )
            failed = [t for t in tasks if t.done() and t.exception() is not None]
            if failed:
                raise RuntimeError(f"{len(failed)} SSE viewers failed: {failed[0].exception()!r}")
            await asyncio.sleep(SETTLE_SECONDS)
            loaded = server.rss_kb()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, OSError, RuntimeError):
                    await task
            for c in clients:
                c.close()
    return Result(viewers=viewers, idle_kb=idle, loaded_kb=loaded)
