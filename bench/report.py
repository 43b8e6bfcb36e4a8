"""The results as a plain-text table (printed) and as ``docs/performance.md`` (written)."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

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
from bench.servers import ROOT
from nowplaying.clock import FakeClock
from nowplaying.sources.budget import CallBudget

NOON = 1_767_268_800.0  # 2026-01-01T12:00:00Z

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
    share: share.Result | None = None
    push: push.Result | None = None
    grip: grip.Result | None = None
    sources: sources.Result | None = None
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


def _share_seconds(accounts: int) -> float:
    """The poll interval the default budget allows each of ``accounts`` (the default floor of
    1 s below it)."""

    async def every() -> float:
        budget = CallBudget(FakeClock(NOON))  # at noon the day's pacing does not bind
        shares = [await budget.interval(f"account{n}") for n in range(accounts)]
        return shares[-1].every

    return max(1.0, asyncio.run(every()))  # the default floor: 1 s


def _share(accounts: int) -> list[str]:
    """The share of ``accounts``, issue 22's bound for skips (half of it), and what polling at
    it can do: a skip at a moment independent of the polls waits for the next one, so p95 >=
    0.95 x share."""
    share = _share_seconds(accounts)
    return [
        f"   budget share per account ({accounts} polled, default budget): {share:.2f} s;"
        f" skip bound (issue 22: half of it) {share / 2:.2f} s;",
        f"   polls a share apart catch a skip at a random moment at p95 >= 0.95 x share ="
        f" {0.95 * share:.2f} s",
    ]


def _against(samples: latency.Samples, bound: float, why: str) -> str:
    """``p95 <= bound (why)``, and whether this run met it."""
    p95 = samples.quantile(0.95)
    met = "-" if math.isnan(p95) else ("met" if p95 <= bound and not samples.missed else "NOT met")
    return f"p95 <= {bound:.2f} s ({why}): {met}"


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
        out += throughput.lines(r.throughput)
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
    if r.share is not None:
        out += share.lines(r.share)
    if r.push is not None:
        out += push.lines(r.push)
    out += _later_sections(r)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    out.append(f"total runtime: {r.seconds:.0f} s; load average at the end {load}")
    return "\n".join(out)


def _later_sections(r: Results) -> list[str]:
    """The sections after push (the table's function stays within its branches)."""
    out: list[str] = []
    if r.grip is not None:
        out += grip.lines(r.grip)
    if r.sources is not None:
        out += sources.lines(r.sources)
    return out


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
    half = _share_seconds(1) / 2
    targets = {
        "natural end": _against(r.natural, 0.5, "issue 22, 1 account"),
        "skip": _against(r.skip, half, "issue 22: half the share"),
    }
    out = [
        "2. Change-to-viewer latency (real server, SSE viewer, "
        f"NOWPLAYING_POLL_SECONDS={r.poll_seconds:g})",
        "",
        f"   {'change':<14}{'samples':>8}{'missed':>8}{'median':>10}{'p95':>10}{'max':>10}"
        "   target",
    ]
    rows = (
        ("natural end", r.natural),
        ("skip", r.skip),
        ("  -> 1st poll", r.skip_poll),
        ("  poll->viewer", r.skip_delivery),
    )
    for name, samples in rows:
        top = max(samples.values) if samples.values else math.nan
        out.append(
            f"   {name:<14}{len(samples.values):>8}{samples.missed:>8}"
            f"{_s(samples.median):>10}{_s(samples.quantile(0.95)):>10}{_s(top):>10}"
            f"   {targets.get(name, '')}".rstrip()
        )
    return [*out, *_share(1), ""]


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
        ("  3 inst.: change -> 1st poll", r.multi.polls()),
        ("  3 inst.: 1st poll -> viewer", r.multi.delivery()),
        ("  1 inst.: change -> 1st poll", r.single.polls()),
        ("  1 inst.: 1st poll -> viewer", r.single.delivery()),
    ]
    rows.append(("3 instances, natural end", r.natural))
    half = _share_seconds(r.accounts) / 2
    for name, samples in rows:
        top = max(samples.values) if samples.values else math.nan
        target = _against(samples, half, "issue 22: half the share") if name[0] != " " else ""
        if samples is r.natural:
            target = _against(samples, 1.0, f"issue 22, {r.accounts} accounts, 3 instances")
        out.append(
            f"   {name:<32}{len(samples.values):>8}{samples.missed:>8}"
            f"{_s(samples.median):>10}{_s(samples.quantile(0.95)):>10}{_s(top):>10}"
            f"   {target}".rstrip()
        )
    out += [
        *_share(r.accounts),
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
        f"   {f'with {r.viewers} SSE viewers':<30}{r.loaded_kb / 1024:>8.1f} MB   target <= 150 MB",
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
    """Replace the machine and results in ``docs/performance.md``, between its markers; the rest
    of the page (how to reproduce, what is measured, the hand-written history) is kept."""
    doc = DOC.read_text(encoding="utf-8")
    head, begun, rest = doc.partition(BEGIN)
    _, ended, tail = rest.partition(END)
    if not begun or not ended:
        raise RuntimeError(f"{DOC} has lost its markers {BEGIN.strip()} / {END.strip()}")
    written = GENERATED.format(table=printed, m=machine)
    DOC.write_text(f"{head}{BEGIN}{written}{END}{tail}", encoding="utf-8")


GENERATED = """\
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
"""
"""What a full run writes into docs/performance.md, between :data:`BEGIN` and :data:`END`."""
BEGIN = "<!-- generated by `make bench` from here: Machine and Results -->\n"
END = "<!-- generated by `make bench` up to here -->\n"
