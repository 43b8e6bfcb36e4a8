"""What the life-cycle soak adds up to: its checks, the headline figures and the tables."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from soak.audience import Drop, EventSourceViewer, is_live
from soak.checks import Check
from soak.cluster import Restart
from soak.life import POLLERS, RELOGIN, SSE_VIEWERS, USERS, Life
from soak.relogin import LIVE_TARGET
from soak.report import checks_table, table

SHUTDOWN_SECONDS = 10.0  # NOWPLAYING_SHUTDOWN_SECONDS, the default the instances run with
BACK_TARGET = 5.0


def _allowed(life: Life, account: str, at: float, *, stale_only: bool) -> bool:
    """An answer that is not live data but is by design: the lockout (stale), the relogin."""
    r = life.relogin
    if r is not None and account == r.account and r.revoked_at <= at <= r.done_at:
        return True
    lock = life.lockout
    return stale_only and lock is not None and at >= lock.injected_at


def visible_errors(life: Life) -> list[str]:
    """Everything a viewer would have seen go wrong, ``+seconds`` from when all were watching."""
    out: list[tuple[float, str]] = []
    t0 = life.watch_from
    for v in life.viewers:
        out += [
            (p.at, f"{v.kind} {v.account}: {p.what}")
            for p in v.problems
            if not _allowed(life, v.account, p.at, stale_only=False)
        ]
        for e in v.events:
            if e.at < t0 or is_live(e.data):
                continue
            stale_only = "error" not in e.data
            if not _allowed(life, v.account, e.at, stale_only=stale_only):
                shown = {k: e.data[k] for k in ("error", "stale", "isPlaying") if k in e.data}
                out.append((e.at, f"{v.kind} {v.account}: event id {e.id} {shown}"))
    for p in life.pollers:
        out += [
            (q.at, f"{p.kind} {p.account}: {q.what}")
            for q in p.problems
            if not _allowed(life, p.account, q.at, stale_only=False)
        ]
        for at, status, live in p.answers:
            if status not in (200, 304):
                continue  # a problem already (counted once)
            if at >= t0 and not live and not _allowed(life, p.account, at, stale_only=True):
                out.append((at, f"{p.kind} {p.account}: {status}, not live"))
    return [f"+{at - t0:.1f}s {what}"[:240] for at, what in sorted(out)]


@dataclass
class Roll:
    """One restart as its viewers lived it."""

    restart: Restart
    drops: list[Drop]
    slowest: float | None
    not_back: int
    in_lockout: bool
    slowest_answer: float
    """The longest wait for a (re)connect's response headers in the restart's window."""
    loop_lag: float
    """How late the soak's own event loop ran at worst in that window."""


def rolls(life: Life) -> list[Roll]:
    lock_at = life.lockout.injected_at if life.lockout else math.inf
    drops = [(d, v) for v in life.viewers if not v.told_to_reconnect for d in v.drops]
    out = []
    for r in life.restarts:
        end = (r.back_at or r.sigterm_at + 30) + 5
        mine = [d for d, _ in drops if r.sigterm_at <= d.at < end]
        locked = r.sigterm_at >= lock_at
        gaps = [
            (d.first_at if locked else d.back_at) for d in mine
        ]  # during the lockout every event is (rightly) stale: back means any event
        back = [g - d.at for g, d in zip(gaps, mine, strict=True) if g is not None]
        waits = [w for v in life.viewers for at, w in v.waits if r.sigterm_at <= at < end]
        lag = [late for at, late in life.loop_lag if r.sigterm_at <= at < end]
        out.append(
            Roll(
                r,
                mine,
                max(back, default=None),
                len(mine) - len(back),
                locked,
                max(waits, default=0.0),
                max(lag, default=0.0),
            )
        )
    return out


def _exits(life: Life) -> list[tuple[str, float, int, bool]]:
    out = [
        (f"instance {r.instance}, {r.label}", r.exit.seconds, r.exit.returncode, r.exit.killed)
        for r in life.restarts
        if r.exit is not None
    ]
    if life.lockout:
        out += [("full stop in the lockout", s, 0, False) for s in life.lockout.full_restart_exits]
    out += [("final stop", e.seconds, e.returncode, e.killed) for e in life.final_exits]
    return out


def _missed(life: Life) -> tuple[int, int, list[str]]:
    """(viewers that missed a change, viewers that should have seen one, details)."""
    missed, expected, details = 0, 0, []
    for s in life.skips:
        watching = [
            v for v in life.viewers if v.account == s.account and v.refused is None and v.events
        ]
        gone = [v for v in watching if not s.title or v.saw(s.title, s.at) is None]
        expected += len(watching)
        missed += len(gone)
        if gone:
            details.append(f"{s.account} → {s.title!r} ({s.label}): {len(gone)} missed")
    return missed, expected, details


def checks(life: Life) -> list[Check]:
    out = []
    errors = visible_errors(life)
    out.append(
        Check(
            "No viewer-visible error (target 0)",
            not errors and not life.aborted,
            f"{len(errors)} errors seen by {SSE_VIEWERS} SSE viewers and {POLLERS} pollers"
            " (connect failures, non-200 answers, error or stale events outside the lockout and"
            f" the re-login window){': ' + '; '.join(errors[:5]) if errors else ''}",
        )
    )
    exits = _exits(life)
    longest = max((s for _, s, _, _ in exits), default=0.0)
    bad = [f"{w}: {s:.1f} s, exit {c}{', SIGKILL' if k else ''}" for w, s, c, k in exits
           if s > SHUTDOWN_SECONDS or k or c != 0]  # fmt: skip
    out.append(
        Check(
            f"Every SIGTERM exits by itself within {SHUTDOWN_SECONDS:g} s, viewers attached",
            bool(exits) and not bad,
            f"{len(exits)} stops, longest {longest:.1f} s{'; ' + '; '.join(bad) if bad else ''}",
        )
    )
    rs = rolls(life)
    live_rolls = [r for r in rs if not r.in_lockout]
    slowest = max((r.slowest or 0.0 for r in live_rolls), default=0.0)
    late = [r for r in live_rolls if r.not_back or (r.slowest or 0) > BACK_TARGET]
    dropped = sum(len(r.drops) for r in rs)
    out.append(
        Check(
            f"Every dropped viewer is back on live data within {BACK_TARGET:g} s of its restart",
            bool(live_rolls) and not late and dropped > 0,
            f"{dropped} streams ended by {len(rs)} restarts; slowest return {slowest:.1f} s;"
            f" restarts over target: {len(late)}",
        )
    )
    drops = [d for r in rs for d in r.drops]
    hinted = [d for d in drops if d.clean and d.hint_at_end]
    retries = sorted({d.retry_ms for d in hinted})
    spread = f"{retries[0]}-{retries[-1]} ms, {len(retries)} distinct" if retries else "none"
    out.append(
        Check(
            "Shutdown ends every stream cleanly with a jittered `retry:`",
            bool(drops) and len(hinted) == len(drops) and len(retries) > 1,
            f"{len(hinted)}/{len(drops)} ended streams closed cleanly after a `retry:` hint"
            f" ({sum(d.clean for d in drops)} clean); retry hints {spread}",
        )
    )
    missed, expected, details = _missed(life)
    dupes = sum(v.duplicates for v in life.viewers)
    regress = sum(v.regressions for v in life.viewers)
    sent = sum(v.last_event_ids_sent for v in life.viewers)
    out.append(
        Check(
            "Last-Event-ID: no missed change, no duplicate",
            expected > 0 and missed == 0 and dupes == 0,
            f"{len(life.skips)} track changes made while an instance went away, {missed} of"
            f" {expected} viewer deliveries missed; {dupes} events delivered twice (same id,"
            f" same content); {regress} ids below the Last-Event-ID sent; {sent} reconnects sent"
            f" Last-Event-ID{'; ' + '; '.join(details[:4]) if details else ''}",
        )
    )
    rot = life.rotation
    out.append(
        Check(
            "Key rotation: old cookies valid, `rotate-key` re-seals every account",
            rot is not None and rot.exit == 0 and rot.accounts > 0 and not rot.need_old_key
            and not rot.error,
            (
                f"rotate-key exit {rot.exit} ({rot.output.strip()[-120:]!r}); the new key alone"
                f" opens {rot.accounts - len(rot.need_old_key)}/{rot.accounts} accounts"
                f"{'; ' + rot.error if rot.error else ''}; old-key session cookies: see check 1"
            )
            if rot
            else "did not run",
        )
    )  # fmt: skip
    rl = life.relogin
    out.append(
        Check(
            f"CLI re-login of a revoked account: live on every instance within {LIVE_TARGET:g} s",
            rl is not None and rl.ok,
            _relogin_detail(life),
        )
    )
    lock = life.lockout
    out.append(
        Check(
            "QUOTA_EXCEEDED lockout survives restarts: stale, 0 upstream calls, owner told",
            lock is not None
            and lock.stale_after is not None
            and lock.upstream == 0
            and lock.probes == lock.probes_stale > 0
            and lock.paused_until_ok == 3
            and life.stale_viewers_in_lockout[0] == life.stale_viewers_in_lockout[1] > 0
            and not lock.error,
            _lockout_detail(life),
        )
    )
    out.append(_tokens(life))
    bad_logs = {name: bad for name, bad in log_errors(life).items() if bad}
    out.append(
        Check(
            "Instance logs have no error or traceback",
            not bad_logs and bool(life.logs),
            f"{sum(s.lines for s in life.logs.values())} lines at WARNING and above in"
            f" {len(life.logs)} logs; errors: "
            + (", ".join(f"{n}: {len(b)}" for n, b in bad_logs.items()) or "none"),
        )
    )
    return out


def log_errors(life: Life) -> dict[str, list[str]]:
    """Error lines per instance log (:func:`soak.checks.scan_log` knows the designed ones)."""
    return {name: scan.bad for name, scan in life.logs.items()}


def _relogin_detail(life: Life) -> str:
    rl = life.relogin
    if rl is None:
        return "did not run"
    rec = f"{rl.reconnect_everywhere:.1f} s" if rl.reconnect_everywhere is not None else "never"
    live = f"{rl.live_everywhere:.1f} s" if rl.live_everywhere is not None else "not within 20 s"
    detail = (
        f"{rl.account} revoked: reconnect_required on every instance after {rec}; `nowplaying"
        f" login` beside the servers: redirect through the balancer → {rl.callback_status},"
        f" CLI exit {rl.cli_exit}; live on every instance (private API and public JSON, asked"
        f" directly) {live} after the callback; per instance: {rl.per_instance}"
    )
    if rl.error:
        detail += f"; {rl.error}"
    if rl.cli_exit != 0:
        detail += f"; CLI said: {rl.cli_output.strip()[-300:]!r}"
    return detail


def _lockout_detail(life: Life) -> str:
    lock = life.lockout
    if lock is None:
        return "did not run"
    stale = f"{lock.stale_after:.1f} s" if lock.stale_after is not None else "never"

    def calls(d: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in d.items()) or "0"

    sv, n = life.stale_viewers_in_lockout
    return (
        f"every account stale {stale} after the 429; upstream calls from then on: rolling"
        f" restart of all 3 {calls(lock.calls_rolling)}, full stop and start"
        f" {calls(lock.calls_full_restart)} (in flight before every account read stale:"
        f" {calls(lock.calls_to_stale)}); {lock.probes_stale}/{lock.probes} direct answers"
        f" stale; {sv}/{n} SSE viewers' last event stale; owner told on"
        f" {lock.paused_until_ok}/3 instances: {lock.owner_notes}"
        + (f"; {lock.error}" if lock.error else "")
    )


def _tokens(life: Life) -> Check:
    problems = []
    for u in USERS:
        s = life.stored.get(u)
        if s is None:
            problems.append(f"{u}: not in the database")
        elif s.status != "active" or s.refresh_status != 200:
            problems.append(f"{u}: {s.status}, refresh {s.refresh_status} {s.refresh_error}")
    tokens = [s.refresh_token for s in life.stored.values()]
    dupes = len(tokens) - len(set(tokens))
    detail = (
        f"{len(USERS) - len(problems)}/{len(USERS)} accounts end active with a stored token the"
        f" simulator accepts (rotation: so each is the current one; {RELOGIN} after its"
        f" re-login); {life.calls.get('token:refresh_token', 0)} rotating refreshes in the run"
    )
    if problems:
        detail += "; lost: " + "; ".join(problems)
    return Check(
        "No refresh token lost (target 0)", bool(life.stored) and not problems and not dupes, detail
    )


def figures(life: Life, found: list[Check]) -> list[tuple[str, str]]:
    """The five numbers the issue asks for."""
    errors = visible_errors(life)
    lost = sum(
        1
        for u in USERS
        if (s := life.stored.get(u)) is None or s.status != "active" or s.refresh_status != 200
    )
    rs = [r for r in rolls(life) if not r.in_lockout]
    per = ", ".join(
        f"{r.slowest:.1f}" if r.slowest is not None else "—" for r in rs
    )  # one per restart, in order
    longest = max((s for _, s, _, _ in _exits(life)), default=0.0)
    lock = life.lockout
    return [
        ("viewer-visible errors (target 0)", str(len(errors))),
        ("refresh tokens lost (target 0)", str(lost) if life.stored else "not checked"),
        ("slowest return to live after each restart (outside the lockout), s", per or "—"),
        ("upstream calls during the lockout (target 0)", str(lock.upstream) if lock else "—"),
        ("longest shutdown, s", f"{longest:.1f}"),
        ("checks passed", f"{sum(c.ok for c in found)}/{len(found)}"),
    ]


def _rolls_table(life: Life) -> str:
    rows = []
    for n, r in enumerate(rolls(life), 1):
        e = r.restart.exit
        retries = sorted({d.retry_ms for d in r.drops if d.hint_at_end})
        rows.append(
            (
                n,
                r.restart.label,
                r.restart.instance,
                f"{e.seconds:.1f}" if e else "?",
                (f"{e.returncode}" + (" (SIGKILL)" if e.killed else "")) if e else "?",
                len(r.drops),
                sum(d.clean for d in r.drops),
                f"{retries[0]}-{retries[-1]}" if retries else "—",
                f"{r.slowest:.1f}" if r.slowest is not None else "—",
                r.not_back,
                f"{r.slowest_answer:.1f}",
                f"{r.loop_lag:.1f}",
            )
        )
    headers = ["#", "restart", "instance", "SIGTERM → exit, s", "exit status", "streams ended"]
    more = ["ended cleanly", "retry hints, ms", "slowest back, s", "not back"]
    more += ["slowest reconnect answer, s", "soak loop late by, s"]
    return table([*headers, *more], rows)


def _viewers_table(life: Life) -> str:
    rows: list[tuple[object, ...]] = []
    for kind in ("sse-private", "sse-public"):
        vs: list[EventSourceViewer] = [v for v in life.viewers if v.kind == kind]
        rows.append(
            (
                kind,
                len(vs),
                sum(v.connects for v in vs),
                sum(len(v.events) for v in vs),
                f"{sum(len(v.drops) for v in vs)} ({sum(v.retried for v in vs)} connects resent)",
                sum(len(v.problems) for v in vs),
                sum(v.refused is not None for v in vs),
            )
        )
    for kind in ("json", "svg"):
        ps = [p for p in life.pollers if p.kind == kind]
        rows.append(
            (
                kind,
                len(ps),
                sum(len(p.answers) for p in ps),
                "—",
                f"{sum(p.retried for p in ps)} retried",
                sum(len(p.problems) for p in ps),
                "—",
            )
        )
    headers = ["viewers", "count", "connects / answers", "events", "streams ended"]
    return table([*headers, "problems", "refused (4xx)"], rows)


def render_life(life: Life, command: str) -> tuple[str, list[Check]]:
    """The report as Markdown (level-3 headings: it lives inside docs/operations.md)."""
    found = checks(life)
    result = "PASS" if all(c.ok for c in found) else "**FAIL**"
    meta = [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", f"{len(os.sched_getaffinity(0))} CPUs (nproc), {os.uname().machine}"),
        ("command", f"`{command}`"),
        ("duration", f"{life.duration:.0f} s"),
        ("result", result + (f" (aborted: {life.aborted})" if life.aborted else "")),
        (
            "load",
            f"3 instances (PostgreSQL + Redis) behind one balancer; {len(USERS)} accounts;"
            f" {len(life.viewers)} SSE viewers, {len(life.pollers)} JSON/SVG pollers;"
            f" {len(life.restarts)} rolling restarts and a full stop and start",
        ),
    ]
    errors = visible_errors(life)
    parts = [
        table(["", ""], meta),
        "",
        "### Figures",
        "",
        table(["figure", "value"], figures(life, found)),
        "",
        "### Checks",
        "",
        checks_table(found),
        "",
        "### Restarts",
        "",
        _rolls_table(life),
        "",
        "### Viewers",
        "",
        _viewers_table(life),
        "",
        "### Phases",
        "",
        table(["phase", "seconds"], [(p, f"{s:.1f}") for p, s in life.phases]),
    ]
    if errors:
        parts += ["", "### Viewer-visible errors (first 30)", "", "```", *errors[:30], "```"]
    bad = [f"{n}: {line}" for n, lines in log_errors(life).items() for line in lines]
    if bad:
        parts += ["", "### Instance log errors (first 20)", "", "```", *bad[:20], "```"]
    return "\n".join(parts) + "\n", found
