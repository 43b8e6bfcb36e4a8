"""The results as a plain-text table (printed) and as ``docs/performance.md`` (written)."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import (
    budget,
    edge,
    fanout,
    instructions,
    latency,
    memory,
    multi,
    throughput,
    upstream,
)
from .servers import ROOT

DOC = ROOT / "docs" / "performance.md"


@dataclass
class Results:
    upstream: list[upstream.Row] | None = None
    latency: latency.Result | None = None
    throughput: throughput.Result | None = None
    memory: memory.Result | None = None
    multi: multi.Result | None = None
    fanout: fanout.Result | None = None
    edge: edge.Result | None = None
    budget: budget.Result | None = None
    instructions: instructions.Result | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Machine:
    cpus: int
    cpu_model: str
    python: str
    kernel: str
    date: str
    load: str
    commit: str

    @classmethod
    def here(cls) -> Machine:
        model = "unknown"
        with Path("/proc/cpuinfo").open() as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        return cls(
            cpus=len(os.sched_getaffinity(0)),
            cpu_model=model,
            python=platform.python_version(),
            kernel=f"{platform.system()} {platform.release()}",
            date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            load=" ".join(f"{x:.2f}" for x in os.getloadavg()),
            commit=_commit(),
        )


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}{' + uncommitted changes' if dirty else ''}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "-"


def _s(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds:.2f} s"


def table(r: Results, machine: Machine) -> str:
    out: list[str] = [
        f"nowplaying benchmarks, {machine.date}: {machine.cpus} CPUs ({machine.cpu_model}), "
        f"Python {machine.python}, load average at start {machine.load}",
        "",
    ]
    if r.upstream is not None:
        out += _upstream(r.upstream)
    if r.latency is not None:
        out += _latency(r.latency)
    if r.throughput is not None:
        out += _throughput(r.throughput)
    if r.memory is not None:
        out += _memory(r.memory)
    if r.multi is not None:
        out += _multi(r.multi)
    if r.fanout is not None:
        out += _fanout(r.fanout)
    if r.edge is not None:
        out += edge.lines(r.edge)
    if r.budget is not None:
        out += budget.lines(r.budget)
    if r.instructions is not None:
        out += instructions.lines(r.instructions)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    out.append(f"total runtime: {r.seconds:.0f} s; load average at the end {load}")
    return "\n".join(out)


def _upstream(rows: list[upstream.Row]) -> list[str]:
    out = [
        "1. Upstream calls to Spotify (token + Web API) and token refreshes, one account",
        "   in-process app + simulator on a fake clock; polling viewers: one request / 10 s each",
        "",
        f"   {'viewers':<14}{'engine, SSE':>17}{'engine, polling':>19}"
        f"{'baseline, polling':>21}{'baseline/engine':>18}",
        f"   {'':<14}{'calls  refresh':>17}{'calls  refresh':>19}{'calls  refresh':>21}"
        f"{'(polling)':>18}",
    ]
    for row in rows:
        unit = (
            "/min"
            if row.seconds == 60
            else "/hour"
            if row.seconds == 3600
            else f"/{row.seconds:g} s"
        )
        label = f"{row.viewers} {unit}"
        cells = ""
        for count, width in (
            (row.engine_sse, 17),
            (row.engine_polling, 19),
            (row.baseline_polling, 21),
        ):
            cells += f"{count.calls:>{width - 9}}{count.refreshes:>9}"
        ratio = _ratio(row.baseline_polling.calls, row.engine_polling.calls)
        out.append(f"   {label:<14}{cells}{ratio:>18}")
    return [*out, ""]


def _latency(r: latency.Result) -> list[str]:
    targets = {
        "natural end": "p95 <= 1.5 s",
        "skip": f"p95 <= {r.poll_seconds + 1:g} s (poll + 1 s)",
    }
    out = [
        "2. Change-to-viewer latency (real server, SSE viewer, "
        f"NOWPLAYING_POLL_SECONDS={r.poll_seconds:g})",
        "",
        f"   {'change':<14}{'samples':>8}{'missed':>8}{'median':>10}{'p95':>10}{'max':>10}"
        "   target",
    ]
    for name, samples in (("natural end", r.natural), ("skip", r.skip)):
        top = max(samples.values) if samples.values else math.nan
        out.append(
            f"   {name:<14}{len(samples.values):>8}{samples.missed:>8}"
            f"{_s(samples.median):>10}{_s(samples.quantile(0.95)):>10}{_s(top):>10}"
            f"   {targets[name]}"
        )
    return [*out, ""]


def _throughput(r: throughput.Result) -> list[str]:
    out = [
        f"3. Throughput, {throughput.CONNECTIONS} keep-alive connections, "
        f"{throughput.SECONDS:g} s per trial, engine endpoints and bare alternated "
        f"{len(r.bare)} times ({r.body_bytes}-byte JSON body; card {r.svg_bytes} bytes, "
        "cover embedded)",
        "",
        f"   {'endpoint':<30}{'req/s, median':>15}   {'req/s per round':<26}"
        f"{'p50':>9}{'p99':>9}{'server CPU':>12}",
    ]
    rows = [(f"GET {name} (engine)", trials) for name, trials in r.endpoints.items()]
    for name, trials in [*rows, ("bare Starlette JSON", r.bare)]:
        rps = sorted(t.rps for t in trials)
        mid = sorted(trials, key=lambda t: t.rps)[len(trials) // 2]
        listed = " ".join(f"{t.rps:.0f}" for t in trials)
        out.append(
            f"   {name:<30}{rps[len(rps) // 2]:>15.0f}   {listed:<26}"
            f"{mid.p50_ms:>6.1f} ms{mid.p99_ms:>6.0f} ms{mid.server_cpu:>7.2f} core"
        )
    errors = sum(t.errors for trials in (*r.endpoints.values(), r.bare) for t in trials)
    for name, trials in r.endpoints.items():
        per_round = " ".join(f"{e.rps / b.rps:.2f}" for e, b in zip(trials, r.bare, strict=True))
        target = throughput.ENDPOINTS.get(name, math.nan)
        out.append(
            f"   {f'ratio {name} / bare':<30}{r.ratio_of(name):>15.2f}   {per_round:<26}"
            f"target >= {target:g}"
        )
        by_cpu = r.cpu_ratios(name)
        if by_cpu:
            listed = " ".join(f"{x:.2f}" for x in by_cpu)
            out.append(
                f"   {'  by server CPU per request':<30}{statistics.median(by_cpu):>15.2f}   "
                f"{listed:<26}"
            )
    out.append(f"   errors: {errors}")
    return [*out, ""]


def _memory(r: memory.Result) -> list[str]:
    return [
        f"4. Server memory (VmRSS) with {r.viewers} open SSE viewers",
        "",
        f"   {'idle (signed in, polling)':<30}{r.idle_kb / 1024:>8.1f} MB",
        f"   {f'with {r.viewers} SSE viewers':<30}{r.loaded_kb / 1024:>8.1f} MB   target < 150 MB",
        f"   {'per viewer':<30}{r.per_viewer_kb:>8.1f} KB",
        "",
    ]


def _multi(r: multi.Result) -> list[str]:
    head = "5. Multi-instance (3 processes, PostgreSQL + Redis)"
    if r.skipped is not None:
        return [f"{head}: skipped: {r.skipped}", ""]
    assert r.multi is not None
    assert r.single is not None
    viewers = r.viewers_per_account * r.accounts
    leases = " ".join(str(r.leases.get(i, 0)) for i in range(multi.INSTANCES))
    errors = r.multi.viewer_errors + r.single.viewer_errors
    out = [
        head,
        f"   {viewers} SSE viewers on {r.accounts} accounts, {r.viewers_per_account} each "
        f"({r.viewers_per_account // multi.INSTANCES} per account on each of 3 instances), "
        f"then the same viewers",
        f"   on 1 instance; NOWPLAYING_POLL_SECONDS={r.poll_seconds:g}; polling leases per "
        f"instance: {leases}; viewer errors: {errors}",
        *(
            ["   WARNING: Redis db 15 was flushed by another process during the run; rerun"]
            if r.disturbed
            else []
        ),
        "",
        f"   {'upstream calls':<32}{'1 instance':>12}{'3 instances':>13}{'3 / 1':>8}   target",
        f"   {'currently-playing/min/account':<32}{r.single.per_minute:>12.1f}"
        f"{r.multi.per_minute:>13.1f}{r.multi.per_minute / r.single.per_minute:>8.2f}"
        "   ratio ~1.0",
        f"   {f'counted in {r.multi.window:.0f} s, per minute':<32}"
        f"{r.single.counted_per_minute:>12.1f}{r.multi.counted_per_minute:>13.1f}"
        f"{r.multi.counted_per_minute / r.single.counted_per_minute:>8.2f}",
        f"   {f'counted in {r.multi.window:.0f} s, per account':<32}"
        f"{' '.join(str(n) for n in r.single.per_account.values()):>12}"
        f"{' '.join(str(n) for n in r.multi.per_account.values()):>13}",
        "",
        f"   {'skip -> slowest viewer':<32}{'samples':>8}{'missed':>8}{'median':>10}{'p95':>10}"
        f"{'max':>10}   target",
    ]
    rows: list[tuple[str, latency.Samples]] = [
        ("3 instances, all viewers", r.multi.samples()),
        *((f"  on instance {i}", r.multi.samples(i)) for i in range(multi.INSTANCES)),
        ("1 instance, all viewers", r.single.samples()),
    ]
    for name, samples in rows:
        top = max(samples.values) if samples.values else math.nan
        target = f"p95 <= {r.poll_seconds + 1:g} s (poll + 1 s)" if name[0] != " " else ""
        out.append(
            f"   {name:<32}{len(samples.values):>8}{samples.missed:>8}"
            f"{_s(samples.median):>10}{_s(samples.quantile(0.95)):>10}{_s(top):>10}"
            f"   {target}".rstrip()
        )
    out += [
        "",
        f"   {'token refreshes, 1 expiry':<32}{r.single.refresh_calls:>12}"
        f"{r.multi.refresh_calls:>13}{'':>8}   {r.accounts} (one per account)",
    ]
    return [*out, ""]


def _fanout(r: fanout.Result) -> list[str]:
    reached = "" if r.viewers == r.wanted else f" (of {r.wanted} asked for: {r.refused} failed)"
    out = [
        f"6. Fan-out: {r.viewers} SSE viewers of one public link on one server process{reached}",
        f"   connected in {r.connect_seconds:.0f} s; server log: {r.fd_limit_log}",
        "",
        f"   {'idle (signed in, polling)':<30}{r.idle_kb / 1024:>8.1f} MB",
        f"   {f'with {r.viewers} SSE viewers':<30}{r.loaded_kb / 1024:>8.1f} MB   target < 250 MB",
        f"   {'per viewer':<30}{r.per_viewer_kb:>8.1f} KB",
        "",
        f"   {'published -> viewer':<22}{'viewers':>8}{'missed':>8}{'median':>10}{'p95':>10}"
        f"{'max':>10}{'CPU/change':>12}{'bytes/viewer':>14}",
    ]
    for i, c in enumerate(r.changes, 1):
        out.append(
            f"   {f'change {i}':<22}{len(c.latencies):>8}{c.missed:>8}"
            f"{_s(c.quantile(0.5)):>10}{_s(c.quantile(0.95)):>10}{_s(c.quantile(1.0)):>10}"
            f"{c.cpu_seconds:>10.2f} s{c.bytes_per_viewer:>14}"
        )
    out.append("   target: p95 <= 0.5 s from the moment the change is published")
    return [*out, ""]


def write_doc(printed: str, machine: Machine) -> None:
    DOC.write_text(DOC_TEMPLATE.format(table=printed, m=machine), encoding="utf-8")


DOC_TEMPLATE = """\
# Performance

Numbers from one run of the benchmark suite. They are measurements on the machine below, not
guarantees: rerun `make bench` after a change and compare the ratios, which travel better than
the absolute numbers.

## How to reproduce

```sh
make bench          # = .venv/bin/python -m bench; about 4-5 minutes; rewrites this file
```

Everything talks to 127.0.0.1 only; the servers are started and stopped by the suite.
`python -m bench upstream latency` runs some sections only (and leaves this file alone).

Section 5 also needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379, the ones
`make test` uses (`NOWPLAYING_TEST_POSTGRES_URL`, `NOWPLAYING_TEST_REDIS_URL` override them).
It creates and drops its own database and flushes Redis db 15 before and after, so nothing else
may use db 15 meanwhile (the multi-instance test does: do not run both at once). Without the
services it prints `skipped: ...` and the other sections still run. To rerun it alone (about
75 s): `.venv/bin/python -m bench multi`.

## Machine

| | |
|---|---|
| date | {m.date} |
| CPUs (`nproc`) | {m.cpus} ({m.cpu_model}) |
| Python | {m.python} |
| kernel | {m.kernel} |
| load average at start | {m.load} |
| code | commit {m.commit} |

## Results

```text
{table}
```

## What is measured

**1. Upstream calls and token refreshes.** The app and the simulated Spotify run in-process on a
fake clock (`bench/upstream.py`), so a simulated minute costs about a second. The listener plays
continuously; the minute starts 27 s before a track ends, so one track change falls in it. The
simulator counts every request it receives: *calls* are token requests plus Web API requests,
*refresh* is token requests with `grant_type=refresh_token`. SSE viewers hold
`/api/spotify/events` open; polling viewers each `GET /api/spotify` every 10 s, their first
requests spread evenly over the 10 s. The **baseline** is what common now-playing widgets do on
every request: refresh the access token, then call currently-playing (`SpotifyClient.refresh` +
`SpotifyClient.currently_playing` against the same simulator); it has no SSE. The last row is one
simulated hour with one viewer: the access token lives 3600 s, so the engine refreshes it once.
The engine polls each watched account as often as its share of the call budget allows (every
second for one account at the default budget, [budget.md](budget.md)) plus once at each predicted
track end, whatever the audience: with a single viewer it makes more calls than the baseline
(freshness is bought with calls, inside the budget); its advantage grows with the audience.

**2. Change-to-viewer latency.** `nowplaying serve` in demo mode in its own process, system clock,
`NOWPLAYING_POLL_SECONDS=5`, one SSE viewer on a raw socket (`bench/latency.py`). Each cycle, at a
random moment in the poll interval, the bench makes the simulated player jump to another track
5 s + U(1.5, 3) s before its end (the control API's `play` with an item and a position: a skip
and a seek in one call). *Skip* is the time from the change (the simulator's timestamp) to the
SSE event with the new title; nothing predicts a skip, so the engine sees it at its next periodic
poll. By then at least 1.5 s of the track are left and the engine knows when it ends; *natural
end* is the time from that end (change timestamp + time left, from the simulator's state) to the
event with the next title. Server and bench read the same clock. p95 is nearest-rank: with 12
samples it is the largest one. The random moments come from a fixed seed, so reruns sample the
same moments in the poll interval.

**3. Throughput.** `GET /api/spotify` with a valid session cookie, answered from the shared state,
and the public `GET /p/ID.json` and `GET /p/ID.svg` (cover embedded, from the cover cache; the card
itself from the rendered-card cache, one rendering per second, see `web/cards.py`) of the same
account, published, against a bare Starlette app whose one `async` endpoint returns the same JSON
body (`bench/bare.py`). Both run under uvicorn with the same settings (one worker,
`access_log=False`, `log_level="warning"`, no proxy headers), each in its own process; the load
generator (`bench/loadgen.py`, raw asyncio sockets, HTTP/1.1 keep-alive) runs in a third process and
loads one server at a time, alternating A/B. *server CPU* is the loaded server's CPU use during the
median trial, in cores: near 1.0 means the server, not the load generator, was the limit. The ratio
is the median of the five rounds' ratios (each round is one engine trial then one bare trial, back
to back), which a burst of other load on the machine distorts less than a ratio of medians. On a
shared machine (other test runs, editors) the rounds spread widely; the per-round columns show how
much, and a rerun on a quiet machine is the better figure. *by server CPU per request* compares the
same trials by work done: each round's bare server CPU seconds per request over the engine's. It is
not the target, but other load on the machine disturbs it far less than requests per second (a
server that gets a quarter of a core still spends its own CPU per request).

**4. Memory.** A fresh server process, signed in, its poller running: `VmRSS` from
`/proc/PID/status` idle, then with 1000 SSE connections open, each having received its first
event (`bench/memory.py`).

**5. Multi-instance.** The cluster of `tests/test_multi_instance.py`, started by the bench
(`bench/multi.py`): a `nowplaying simulator` process with five users, a fresh PostgreSQL
database, Redis db 15 flushed, three `nowplaying serve` processes sharing both
(`NOWPLAYING_REDIS_URL`, `NOWPLAYING_DATABASE_URL=postgresql://...`,
`NOWPLAYING_POLL_SECONDS=5`). Five accounts sign in; 300 SSE viewers (`httpx` streams in the
bench process) watch them, 60 per account, 20 per account on each instance, all connecting at
once. After a 20 s window (the *3 instances* column), the bench kills two of the servers, moves
their viewers to the first one and, once it holds every account's polling lease, runs the same
20 s window again (*1 instance*): the same viewers, accounts, settings and skip schedule, in the
same run. *currently-playing/min/account* is the mean over the accounts of each account's calls
per minute, taken from the calls' times (the simulator's counters are read every 0.1 s; the
calls after the first, over the time from the first to the last): a plain count over 20 s with
one poll per 5 s is 5 or 6 depending on where the window falls, which the next two rows show.
*Polling leases per instance* is how many accounts each instance polled for in the 3-instance
window (the first instance whose poller asks takes an account's lease). *skip -> slowest
viewer*: in each window, 8 skips (`POST /_control/users/{{id}}/player/skip`, accounts in turn, the
same random moments in the poll interval in both windows) each give one sample: the time from
the simulator's change timestamp to the event with the new title at the slowest of the
account's 60 viewers; the per-instance rows take the slowest viewer on that instance only. A
skip is missed when some viewer has not seen it 3 s after a poll interval. *Token refreshes*:
5 s into each window `POST /_control/tokens/expire` expires every access token once; the row
counts the window's `token:refresh_token` calls (a 401 is not counted as a per-account call and
the retry after the refresh replaces the failed call, so the expiry leaves the call counts
above unchanged). A *WARNING* line appears when something else flushed Redis db 15 during the
run.

**6. Fan-out.** `python -m bench fanout` (`bench/fanout.py`): a fresh `nowplaying serve` in demo
mode (INFO log, `NOWPLAYING_PUBLIC_RATE_PER_SECOND=0`, since every viewer comes from 127.0.0.1),
signed in and published; the bench raises its own soft RLIMIT_NOFILE to the hard limit and opens
10,000 connections on the public `/p/ID/events` with a lean raw-socket client (one
`asyncio.Protocol` each), 500 at a time, each waiting for its first event. The server log line
quoted is the one `serve` writes at start after raising its own limit. Then three times, after a
random pause and 3 s of idle CPU measurement, the simulator's `/_control` skip changes the
track. *published -> viewer* is each viewer's arrival time (`time.time()` at its last byte)
minus the moment the server published the change, read from the event itself: the earliest
`at` (ms) among the viewers' events, which the server stamps when it encodes the change right
after the poller publishes it; the poll delay before that is not counted. *CPU/change* is the
server's utime + stime from the skip until the last viewer has the event, less what the same
time costs idle with the viewers connected (heartbeats, polls). *bytes/viewer* is the event's
HTTP chunk as one viewer received it (median). Bench and server share the machine's 2 CPUs, so
the client's reading competes with the server's writing; a heartbeat tick (every 15 s, every
stream) that lands on a change adds its own writes.

**8. Call budget and adaptive polling.** `python -m bench budget` (`bench/budget.py`), in
simulated time: the live engine (`LiveHub`) polls the simulator through the real `SpotifyClient`
on a fake clock, viewers are hub subscriptions, and the simulator's limits (`sim.limits`) count
what reaches "Spotify" and refuse past its window. Each scenario runs twice in the same run:
*fixed* is the schedule before the budget (every 5 s or at the predicted track end, idle backoff
to 30 s, no budget) and *adaptive* the call budget with its schedule. Latencies are simulated
seconds from the change at the simulator to the viewer's event, so they measure scheduling alone
(no network; a real Spotify round trip adds its own). One account, default budget (60 / 30 s):
20 skips at random moments (to another track 6.5-8 s before its end), the natural end of each
such track, and 6 starts after 2 minutes stopped with the viewer watching. Five accounts with a
budget of 30 / 30 s and the simulator's window at 30: random skips (one account every 2-8 s) for
10 simulated minutes; the 429s and the most calls the simulator counted in any 30 s. The wrong
guess: budget 60 / 30 s, the simulator's window 30, five watched accounts for 10 minutes: the
window 429s after the first, the calls per 30 s over the last 5 minutes and the learned window
limit at the end. Calls per minute: one account for 5 minutes with 1 and with 1000 viewers.
See [budget.md](budget.md).
"""
