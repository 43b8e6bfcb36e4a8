"""Change-to-viewer latency, in real time: a real server process, an SSE viewer, the system clock.

The server runs in demo mode with ``NOWPLAYING_POLL_SECONDS=5``; the bench drives the simulated
player through its control API and times the SSE events on the same machine clock. Each cycle
gives one sample of each kind:

1. **skip**: at a random moment (uniform over one poll interval after the last poll), the
   listener jumps to another track, ``5 s + U(1.5, 3) s`` before its end (one control call,
   ``play`` with an item and a position: a skip and a seek at once). Latency: from the moment the
   simulator reports the change until the event with the new title arrives. Nothing predicts a
   skip, so the engine sees it at its next periodic poll.
2. **natural end**: the engine has seen that track with at least 1.5 s left (its next poll after
   the skip comes within 5 s), so it knows when it ends. The end time is computed from the
   simulator's reported state (change timestamp + remaining duration). Latency: from that end
   until the event with the next title arrives.

Items that the demo playlist follows with a silent gap are not chosen, so every end is a track
change. A sample that does not arrive within its bound is counted as missed, not dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from harness.servers import CONTROL, nowplaying_server, sign_in

from bench.servers import SSEClient, SSEEvent
from nowplaying.simulator import default_playlist

POLL_SECONDS = 5.0
CYCLES = 10
SLACK = 3.0  # a sample later than its worst expected time by this much is a miss
GAP_EVERY = 4  # the demo player's default: a silent gap after every 4th item
CALL_TIMES = CONTROL.split("/users/", 1)[0] + "/calls/times"


@dataclass
class Samples:
    values: list[float] = field(default_factory=list)
    missed: int = 0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.values)
        if not ordered:
            return float("nan")
        # Nearest rank: with fewer than 20 samples, p95 is the largest.
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")


@dataclass
class Result:
    skip: Samples = field(default_factory=Samples)
    natural: Samples = field(default_factory=Samples)
    poll_seconds: float = POLL_SECONDS
    skip_poll: Samples = field(default_factory=Samples)
    """Per skip: from the change to the first currently-playing call after it (the simulator's
    call times); the rest of the skip's latency is the way from that poll to the viewer."""
    skip_delivery: Samples = field(default_factory=Samples)


async def _wait_event(
    sse: SSEClient, after: int, match: Callable[[dict[str, Any]], bool], deadline: float
) -> SSEEvent | None:
    """The first event from index ``after`` on that matches, or None at ``deadline``."""
    seen = after
    while True:
        for event in sse.events[seen:]:
            if match(event.data):
                return event
        seen = len(sse.events)
        sse.arrived.clear()
        remaining = deadline - time.time()
        if remaining <= 0:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sse.arrived.wait(), remaining)


async def _first_poll(
    control: httpx.AsyncClient, changed_at: float, arrived: float, result: Result
) -> None:
    """Split a skip's latency at the first poll after the change (the simulator's call times,
    on the same machine clock): the wait for that poll, and its way to the viewer."""
    times = (await control.get(CALL_TIMES)).json().get("currently-playing:demo", [])
    after = [t for t in times if t >= changed_at]
    if not after:
        result.skip_poll.missed += 1
        result.skip_delivery.missed += 1
        return
    result.skip_poll.values.append(min(after) - changed_at)
    result.skip_delivery.values.append(arrived - min(after))


def _titled(title: str) -> Callable[[dict[str, Any]], bool]:
    return lambda data: data.get("title") == title


def _moved_on_from(title: str) -> Callable[[dict[str, Any]], bool]:
    return lambda data: data.get("title") not in (None, title)


def _next_item(playlist_size: int, current: int | None, rng: random.Random) -> int:
    """A track other than the current one whose natural successor is a track, not a gap."""
    choices = [i for i in range(playlist_size) if (i + 1) % GAP_EVERY != 0 and i != current]
    return rng.choice(choices)


async def run(cycles: int = CYCLES, seed: int = 1) -> Result:
    rng = random.Random(seed)
    result = Result()
    with nowplaying_server(poll_seconds=POLL_SECONDS) as server:
        cookie = await sign_in(server.url)
        host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
        sse = SSEClient(host, port, cookie)
        reader = asyncio.create_task(sse.run())
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as control:
                await _cycles(control, sse, cycles, rng, result)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await reader
            sse.close()
    return result


async def _cycles(
    control: httpx.AsyncClient,
    sse: SSEClient,
    cycles: int,
    rng: random.Random,
    result: Result,
) -> None:
    first = await _wait_event(sse, 0, lambda d: "title" in d, time.time() + 15)
    if first is None:
        raise RuntimeError("the SSE viewer got no first event")
    durations = [int(item["duration_ms"]) for item in default_playlist()]
    current = (await control.get(CONTROL)).json().get("index")
    for _ in range(cycles):
        await asyncio.sleep(rng.uniform(0, POLL_SECONDS))
        item = _next_item(len(durations), current, rng)
        left_ms = int((POLL_SECONDS + rng.uniform(1.5, 3.0)) * 1000)
        before = len(sse.events)
        body = {"item": item, "progress_ms": durations[item] - left_ms}
        played = (await control.post(f"{CONTROL}/play", json=body)).json()
        title = played["item"]["name"]
        changed_at = played["timestamp"] / 1000  # the simulator's clock: the machine's
        ends_at = changed_at + left_ms / 1000
        seen = await _wait_event(sse, before, _titled(title), ends_at)
        if seen is None:
            result.skip.missed += 1
            result.natural.missed += 1  # the engine never saw the track before it ended
        else:
            result.skip.values.append(seen.arrived - changed_at)
            await _first_poll(control, changed_at, seen.arrived, result)
            after = sse.events.index(seen) + 1
            ended = await _wait_event(
                sse,
                after,
                _moved_on_from(title),
                ends_at + POLL_SECONDS + SLACK,
            )
            if ended is None:
                result.natural.missed += 1
            else:
                result.natural.values.append(ended.arrived - ends_at)
        current = (await control.get(CONTROL)).json().get("index")
