"""The call budget and the adaptive schedule, side by side with the fixed schedule, simulated time.

Everything runs in-process on a :class:`FakeClock`: the live engine (``LiveHub``) polling the
simulator through the real :class:`SpotifyClient`, SSE viewers as hub subscriptions, and the
simulator's own limits (``sim.limits``) counting what reaches "Spotify". Ten simulated minutes
cost a few seconds. Latencies are simulated seconds from the change at the simulator to the
viewer's event: the engine's scheduling alone (no network in between).

Each scenario runs twice in the same run: **fixed** (today's schedule: every
``NOWPLAYING_POLL_SECONDS`` = 5 s or the predicted track end, idle backoff to 30 s, no budget)
and **adaptive** (the call budget and the schedule that spends it where viewers look).

1. One watched account, the default budget (60 / 30 s): *skip* (jump to another track at a
   random moment, 6.5-8 s before its end) → viewer; the *natural end* of that track → viewer;
   *start after idle* (stopped for 2 minutes while a viewer watches, then playing) → viewer.
2. Five watched accounts sharing a budget of 30 calls / 30 s, the simulator's window also 30:
   window 429s in 10 simulated minutes and each account's skip p95.
3. A wrong guess: budget 60 / 30 s but the simulator's window 30 (half), five accounts: 429s
   after the first one in 10 simulated minutes, and the rate the budget settles at.
4. Upstream calls per minute for one account with 1 and with 1000 viewers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
from harness.helpers import reads_of, sim_client

from nowplaying.clock import FakeClock
from nowplaying.engine.fanout import Subscription
from nowplaying.engine.live import LiveHub
from nowplaying.engine.schedule import Schedule
from nowplaying.models import NowPlaying
from nowplaying.simulator import Simulator
from nowplaying.sources.budget import DEFAULT_PER_DAY, DEFAULT_PER_WINDOW, CallBudget

SIM = "http://sim.test"
STEP = 0.05  # the fake clock moves at most this far at once
MODES = ("fixed", "adaptive")


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile (NaN when empty)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


@dataclass
class Single:
    skip: list[float] = field(default_factory=list)
    natural: list[float] = field(default_factory=list)
    idle_start: list[float] = field(default_factory=list)
    missed: int = 0


@dataclass
class Shared:
    window_429: int = 0
    skip_p95: list[float] = field(default_factory=list)
    calls: int = 0
    max_in_window: int = 0


@dataclass
class Wrong:
    first_429_at: float | None = None
    after_first: int = 0
    settled_per_window: float = 0.0
    learned: int = 0


@dataclass
class Result:
    single: dict[str, Single] = field(default_factory=dict)
    shared: dict[str, Shared] = field(default_factory=dict)
    wrong: dict[str, Wrong] = field(default_factory=dict)
    per_minute: dict[str, tuple[float, float]] = field(default_factory=dict)
    """mode -> (calls per minute with 1 viewer, with 1000 viewers)."""


@dataclass
class Scene:
    """A simulator, an engine polling it, and a recorder of what each account's viewers saw."""

    clock: FakeClock
    sim: Simulator
    hub: LiveHub
    budget: CallBudget | None
    seen: dict[str, list[tuple[float, str | None]]]

    def title(self, user: str) -> str | None:
        state = self.sim.player(user).state()
        return state.item.get("name") if state.item is not None and state.visible else None

    def arrival(self, user: str, title: str | None, since: float) -> float | None:
        """When the viewers of ``user`` first saw ``title`` at or after ``since``."""
        for at, seen in self.seen[user]:
            if at >= since and seen == title:
                return at
        return None


@contextlib.asynccontextmanager
async def scene(
    mode: str,
    users: int,
    *,
    per_window: int = DEFAULT_PER_WINDOW,
    sim_window: int | None = None,
    viewers: int = 1,
) -> AsyncIterator[Scene]:
    clock = FakeClock()
    sim = Simulator(clock=clock, client_id="bench", client_secret="bench-secret")
    sim.limits.configure(window_calls=sim_window, daily_quota=None)
    names = [f"user{i}" for i in range(users)]
    for name in names:
        sim.add_user(name, name.title())
        sim.player(name).set_gaps(0)
    tokens = {name: sim.grant(name, client_id="bench").access_token for name in names}
    budget = (
        CallBudget(clock, per_window=per_window, per_day=DEFAULT_PER_DAY)
        if mode == "adaptive"
        else None
    )
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url=SIM) as http:
        client = sim_client(
            http, clock, base=SIM, client_id="bench", client_secret="bench-secret", budget=budget
        )

        async def fetch(account: str) -> NowPlaying:
            return await client.currently_playing(tokens[account])

        hub = LiveHub(reads_of(fetch), clock, schedule=Schedule(poll_seconds=5.0), budget=budget)
        await hub.start()
        seen: dict[str, list[tuple[float, str | None]]] = {name: [] for name in names}
        async with contextlib.AsyncExitStack() as stack:
            for name in names:
                for v in range(viewers):
                    queue = await stack.enter_async_context(hub.subscribe(name))
                    if v == 0:
                        await stack.enter_async_context(_recording(queue, clock, seen[name]))
            try:
                yield Scene(clock, sim, hub, budget, seen)
            finally:
                await hub.close()


@contextlib.asynccontextmanager
async def _recording(
    queue: Subscription, clock: FakeClock, into: list[tuple[float, str | None]]
) -> AsyncIterator[None]:
    """Note the time and title of every change the viewer's queue receives."""

    async def record() -> None:
        while True:
            snap = await queue.get()
            playing = snap.playing
            item = playing.item if playing is not None and playing.active else None
            into.append((clock.now(), item.title if item is not None else None))

    task = asyncio.ensure_future(record())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _jump(sc: Scene, user: str, rng: random.Random, left: tuple[float, float]) -> tuple[str, float]:
    """Play another track of ``user``'s playlist, ``left`` seconds (uniform) before its end:
    its title, and when it will end."""
    player = sc.sim.player(user)
    playlist = player.playlist
    current = player.state().index
    index = rng.choice([i for i in range(len(playlist)) if i != current])
    left_ms = int(rng.uniform(*left) * 1000)
    player.play(index, int(playlist[index]["duration_ms"]) - left_ms)
    return str(playlist[index]["name"]), sc.clock.now() + left_ms / 1000


async def _single(mode: str, rng: random.Random, cycles: int) -> Single:
    out = Single()
    async with scene(mode, 1) as sc:
        user = "user0"
        await sc.clock.advance(10, step=STEP)
        for _ in range(cycles):
            await sc.clock.advance(rng.uniform(0, 5), step=STEP)
            at = sc.clock.now()
            title, ends = _jump(sc, user, rng, (6.5, 8.0))
            await sc.clock.advance(ends - at + 6, step=STEP)
            seen = sc.arrival(user, title, at)
            nxt = sc.seen[user][-1][1] if sc.seen[user] else None
            end_seen = sc.arrival(user, nxt, ends) if nxt != title else None
            if seen is None or end_seen is None:
                out.missed += 1
                continue
            out.skip.append(seen - at)
            out.natural.append(end_seen - ends)
        for _ in range(max(1, cycles // 3)):
            sc.sim.player(user).stop()
            await sc.clock.advance(120 + rng.uniform(0, 5), step=STEP)
            sc.sim.player(user).play(rng.randrange(len(sc.sim.player(user).playlist)), 0)
            started = sc.title(user)
            at = sc.clock.now()
            await sc.clock.advance(35, step=STEP)
            seen = sc.arrival(user, started, at) if started is not None else None
            if seen is None:
                out.missed += 1
            else:
                out.idle_start.append(seen - at)
    return out


async def _shared(mode: str, rng: random.Random, minutes: float) -> Shared:
    out = Shared()
    users = [f"user{i}" for i in range(5)]
    async with scene(mode, 5, per_window=30, sim_window=30) as sc:
        await sc.clock.advance(10, step=STEP)
        samples: dict[str, list[float]] = {u: [] for u in users}
        end = sc.clock.now() + minutes * 60
        while sc.clock.now() < end:
            await sc.clock.advance(rng.uniform(2, 8), step=STEP)
            user = rng.choice(users)
            at = sc.clock.now()
            title, _ = _jump(sc, user, rng, (40, 60))
            await sc.clock.advance(12, step=STEP)
            seen = sc.arrival(user, title, at)
            samples[user].append((seen - at) if seen is not None else 30.0)
        out.window_429 = sc.sim.limits.counts["window_429"]
        out.skip_p95 = [p95(samples[u]) for u in users]
        out.calls = sc.sim.limits.counts["accepted"]
        out.max_in_window = sc.sim.limits.max_in_window("bench")
    return out


async def _wrong(mode: str, minutes: float) -> Wrong:
    out = Wrong()
    async with scene(mode, 5, per_window=60, sim_window=30) as sc:
        start = sc.clock.now()
        await sc.clock.advance(minutes * 60, step=0.25)
        refused = [at for at, reason in sc.sim.limits.refused_at if reason is None]
        if refused:
            out.first_429_at = refused[0] - start
            out.after_first = len(refused) - 1
        calls = sc.sim.limits.calls("bench")
        since = sc.clock.now() - minutes * 30  # the second half of the run
        out.settled_per_window = sum(1 for t in calls if t > since) / minutes  # = windows in it
        out.learned = await sc.budget.per_window() if sc.budget is not None else 0
    return out


async def _per_minute(mode: str, viewers: int, minutes: float) -> float:
    async with scene(mode, 1, viewers=viewers) as sc:
        await sc.clock.advance(5, step=0.25)
        before = sc.sim.limits.counts["accepted"]
        await sc.clock.advance(minutes * 60, step=0.25)
        return (sc.sim.limits.counts["accepted"] - before) / minutes


async def run(cycles: int = 20, minutes: float = 10.0, seed: int = 7) -> Result:
    """Every scenario, fixed then adaptive (the engine's 429 warnings are silenced meanwhile)."""
    result = Result()
    engine_log = logging.getLogger("nowplaying")
    level = engine_log.level
    engine_log.setLevel(logging.ERROR)
    try:
        for mode in MODES:
            result.single[mode] = await _single(mode, random.Random(seed), cycles)
            result.shared[mode] = await _shared(mode, random.Random(seed), minutes)
            result.wrong[mode] = await _wrong(mode, minutes)
            result.per_minute[mode] = (
                await _per_minute(mode, 1, 5),
                await _per_minute(mode, 1000, 5),
            )
    finally:
        engine_log.setLevel(level)
    return result


def lines(r: Result) -> list[str]:
    """The section's rows for the printed table: fixed and adaptive side by side."""
    out = [
        "8. Call budget and adaptive polling, fixed schedule side by side (simulated time,",
        "   in-process engine + simulator with Spotify's limits modelled; bench/budget.py)",
        f"   {'':<46}{'fixed':>10}{'adaptive':>10}   target (adaptive)",
    ]

    def row(label: str, value: Callable[[str], str], target: str = "") -> None:
        fixed, adaptive = (value(m) for m in MODES)
        out.append(f"   {label:<46}{fixed:>10}{adaptive:>10}   {target}".rstrip())

    s, sh, w, pm = r.single, r.shared, r.wrong, r.per_minute
    row("1 account: skip -> viewer p95 (s)", lambda m: f"{p95(s[m].skip):.2f}", "<= 2.5")
    row("1 account: natural end -> viewer p95 (s)", lambda m: f"{p95(s[m].natural):.2f}", "<= 1")
    row(
        "1 account: start after 2 min idle p95 (s)", lambda m: f"{p95(s[m].idle_start):.2f}", "<= 3"
    )
    row(
        "  samples skip+end / idle start / missed",
        lambda m: f"{len(s[m].skip)}/{len(s[m].idle_start)}/{s[m].missed}",
    )
    row("5 accounts, 30/30 s: window 429s in 10 min", lambda m: str(sh[m].window_429), "0")
    for i in range(5):
        row(
            f"  account {i + 1} skip p95 (s)", lambda m, i=i: f"{sh[m].skip_p95[i]:.2f}", "reported"
        )
    row("  most calls in any 30 s (Spotify's count)", lambda m: str(sh[m].max_in_window), "<= 30")
    row("window = half the budget: 429s after the first", lambda m: str(w[m].after_first), "<= 3")
    row(
        "  first 429 at (simulated s)",
        lambda m: "-" if w[m].first_429_at is None else f"{w[m].first_429_at:.0f}",
    )
    row(
        "  settled rate, calls / 30 s (last 5 min)",
        lambda m: f"{w[m].settled_per_window:.1f}",
        "reported",
    )
    row("  learned window limit at the end", lambda m: str(w[m].learned or "-"))
    row("upstream calls/min, 1 viewer", lambda m: f"{pm[m][0]:.1f}")
    row("upstream calls/min, 1000 viewers", lambda m: f"{pm[m][1]:.1f}", "equal within 1")
    return [*out, ""]


if __name__ == "__main__":
    print("\n".join(lines(asyncio.run(run()))))
