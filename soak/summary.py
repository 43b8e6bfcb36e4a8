"""What one soak run saw (:class:`Run`), and what that adds up to: the checks and the summary."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from soak.chaos import Chaos
from soak.checks import Check, Final, LogScan, Stored
from soak.quota import QuotaResult
from soak.report import percentile, render, table
from soak.viewers import SseViewer, Tally

USERS = [f"user{n}" for n in range(1, 9)]
SETTLE_SECONDS = 20.0


@dataclass
class Run:
    """Everything the soak saw, for the checks and the summary."""

    seed: int
    seconds: float
    published: dict[str, str] = field(default_factory=dict)
    revoked: list[str] = field(default_factory=list)
    quota: QuotaResult | None = None
    tally: Tally = field(default_factory=Tally)
    viewers: list[SseViewer] = field(default_factory=list)
    warm: float | None = None
    chaos: Chaos | None = None
    chaos_seconds: float = 0.0
    settled: float | None = None
    final: dict[str, Final] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    stored: dict[str, Stored] = field(default_factory=dict)
    restarts: int = 0
    kills: int = 0
    log: LogScan = field(default_factory=LogScan)
    phases: list[tuple[str, float]] = field(default_factory=list)

    @property
    def healthy(self) -> list[str]:
        return [u for u in USERS if u not in self.revoked]

    duration: float = 0.0


def _fmt(counter: Counter[str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counter.most_common()) or "none"


def _ends_right(v: SseViewer, revoked: bool) -> bool:
    last = v.last or {}
    if revoked:
        return v.refused is not None or last.get("error") == "reconnect_required"
    return v.refused is None and "error" not in last and not last.get("stale")


def checks(run: Run) -> list[Check]:
    t = run.tally
    out = []
    fivexx: Counter[str] = Counter()
    for (kind, status), n in t.statuses.items():
        if status >= 500:
            fivexx[f"{status} on {kind}"] += n
    other = sum(fivexx.values()) - t.unavailable
    out.append(
        Check(
            "No 500s: no 5xx to a viewer other than the designed 503",
            other == 0,
            f"{other} of {t.requests} answers (all 5xx: {_fmt(fivexx)})",
        )
    )
    out.append(
        Check(
            'No 503 "unavailable" either',
            t.unavailable == 0,
            f'{t.unavailable} answers `503 {{"error": "unavailable"}}` (sent only while the'
            " server has no data at all for an account)",
        )
    )
    out.append(_tokens(run))
    out.append(_revoked(run))
    out.append(_healthy(run))
    q = run.quota
    out.append(
        Check(
            "Hour-long 429 honoured: stale, no upstream calls, and it survives a restart",
            q is not None and q.ok,
            q.detail() if q else "phase did not run",
        )
    )
    failures: Counter[str] = Counter({f"{k} {e}": n for (k, e), n in t.failures.items()})
    out.append(
        Check(
            "No viewer request failed in transport (timeout, reset)",
            not failures,
            _fmt(failures),
        )
    )
    stops = run.restarts + 1
    out.append(
        Check(
            "Server log has no error or traceback",
            not run.log.bad,
            f"{run.log.lines} lines at WARNING and above, {len(run.log.bad)} errors;"
            f" graceful stops {stops - run.kills}/{stops}",
        )
    )
    return out


def _tokens(run: Run) -> Check:
    problems = []
    for u in run.healthy:
        s = run.stored.get(u)
        if s is None:
            problems.append(f"{u}: not in the database")
        elif s.status != "active" or s.refresh_status != 200:
            problems.append(f"{u}: {s.status}, refresh {s.refresh_status} {s.refresh_error}")
    tokens = [s.refresh_token for s in run.stored.values()]
    dupes = len(tokens) - len(set(tokens))
    marked = {u: run.tally.reconnects[u] for u in run.healthy if run.tally.reconnects[u]}
    ok_refresh = len(run.healthy) - len(problems)
    detail = (
        f"{ok_refresh}/{len(run.healthy)} healthy accounts' stored tokens refresh at the simulator"
        f" (so each is its current one); {len(set(tokens))} distinct tokens for {len(tokens)}"
        f" accounts; reconnect_required answers for healthy accounts: {marked or 'none'};"
        f" token markers in the server log: {_fmt(run.log.markers)}"
    )
    if problems:
        detail += "; " + "; ".join(problems)
    return Check(
        "No lost or duplicated refresh token", not problems and not dupes and not marked, detail
    )


def _revoked(run: Run) -> Check:
    ok, parts = bool(run.revoked), []
    for u in run.revoked:
        f, s = run.final.get(u), run.stored.get(u)
        viewers = [v for v in run.viewers if v.target.account == u]
        right = sum(_ends_right(v, revoked=True) for v in viewers)
        good = (
            f is not None
            and f.reconnect()
            and s is not None
            and s.status == "reconnect_required"
            and right == len(viewers)
        )
        ok = ok and good
        at = run.chaos.revoked_at.get(u) if run.chaos else None
        when = f"+{at:.0f} s" if at is not None else "never"
        api = f"{f.api_status} {f.api}" if f else "?"
        public = f.public if f and f.public is not None else "not published"
        db = f"{s.status}, token refresh {s.refresh_status} {s.refresh_error}" if s else "missing"
        parts.append(
            f"{u} (revoked {when}): API {api}; public {public}; DB {db};"
            f" {right}/{len(viewers)} SSE viewers end reconnect_required"
        )
    return Check("Every revoked account ends reconnect_required", ok, " — ".join(parts))


def _healthy(run: Run) -> Check:
    stuck = [
        f"{u}: {f.api_status} {f.api}"
        for u, f in run.final.items()
        if u in run.healthy and not f.live()
    ]
    viewers = [v for v in run.viewers if v.target.account in run.healthy]
    right = sum(_ends_right(v, revoked=False) for v in viewers)
    playing = sum(1 for u in run.healthy if run.final.get(u) and run.final[u].api.get("isPlaying"))
    settled = (
        f"settled {run.settled:.1f} s after faults stopped"
        if run.settled is not None
        else (f"NOT settled within {SETTLE_SECONDS:g} s")
    )
    detail = (
        f"{settled}; {len(run.healthy) - len(stuck)}/{len(run.healthy)} answer 200 live"
        f" ({playing} playing); {right}/{len(viewers)} of their SSE viewers end on live data"
    )
    if stuck:
        detail += "; stuck: " + "; ".join(stuck)
    ok = run.settled is not None and not stuck and right == len(viewers) and bool(run.final)
    return Check("Every healthy account ends live", ok, detail)


def _requests_table(t: Tally) -> str:
    rows = []
    for kind in ("api", "json", "svg", "sse-private", "sse-public"):
        codes = {s: n for (k, s), n in t.statuses.items() if k == kind}
        lat = sorted(t.latency.get(kind, []))
        fails = sum(n for (k, _), n in t.failures.items() if k == kind)

        def band(lo: int, hi: int, codes: dict[int, int] = codes) -> int:
            return sum(n for s, n in codes.items() if lo <= s < hi)

        rows.append(
            (
                kind,
                sum(codes.values()) + fails,
                band(200, 300),
                codes.get(304, 0),
                band(400, 500),
                band(500, 600),
                fails,
                f"{percentile(lat, 50) * 1000:.0f}",
                f"{percentile(lat, 99) * 1000:.0f}",
                f"{(lat[-1] if lat else 0) * 1000:.0f}",
            )
        )
    headers = ["kind", "requests", "2xx", "304", "4xx", "5xx", "transport failures"]
    return table([*headers, "p50 ms", "p99 ms", "max ms"], rows)


def _sse_table(run: Run) -> str:
    rows = []
    for kind in ("sse-private", "sse-public"):
        vs = [v for v in run.viewers if v.target.kind == kind]
        events = [e for v in vs for e in v.events]
        rows.append(
            (
                kind,
                len(vs),
                sum(v.connects for v in vs),
                len(events),
                sum(1 for e in events if e.get("stale")),
                sum(1 for e in events if e.get("error") == "unavailable"),
                sum(1 for e in events if e.get("error") == "reconnect_required"),
                sum(v.drops for v in vs),
                sum(v.refused is not None for v in vs),
            )
        )
    headers = ["stream", "viewers", "connects", "events", "stale", "unavailable"]
    return table([*headers, "reconnect_required", "ended by server", "refused (4xx)"], rows)


def _accounts_table(run: Run) -> str:
    rows = []
    for u in USERS:
        f, s = run.final.get(u), run.stored.get(u)
        role = ("published" if u in run.published else "private") + (
            ", **revoked**" if u in run.revoked else ""
        )
        api = "?"
        if f is not None:
            a = f.api
            api = f"{f.api_status} " + (
                a["error"]
                if "error" in a
                else f"isPlaying={a.get('isPlaying')} stale={a.get('stale', False)}"
            )
        public = "—"
        if f is not None and f.public is not None:
            public = f.public.get("error") or f"isPlaying={f.public.get('isPlaying')}"
        refresh = f"{s.refresh_status} {s.refresh_error}".strip() if s else "missing"
        vs = [v for v in run.viewers if v.target.account == u]
        right = sum(_ends_right(v, revoked=u in run.revoked) for v in vs)
        rows.append(
            (u, role, api, public, s.status if s else "missing", refresh, f"{right}/{len(vs)}")
        )
    headers = ["account", "role", "final /api/spotify", "public JSON", "DB status"]
    return table([*headers, "stored token → /api/token", "SSE viewers ending right"], rows)


def _calls_table(calls: dict[str, int]) -> str:
    rows: list[tuple[str, object]] = [(k, v) for k, v in sorted(calls.items()) if ":user" not in k]
    per_user = {k.split(":")[1]: v for k, v in calls.items() if k.startswith("currently-playing:")}
    if per_user:
        rows.append(
            (
                "currently-playing per account (min-max)",
                f"{min(per_user.values())}-{max(per_user.values())}",
            )
        )
    return table(["endpoint", "calls"], rows)


def render_run(run: Run, command: str) -> tuple[str, list[Check]]:
    """The summary as Markdown, and the checks it reports."""
    found = checks(run)
    t = run.tally
    faults: Counter[str] = Counter(run.chaos.counts if run.chaos else {})
    if run.quota is not None:
        faults["429 Retry-After 3600 QUOTA_EXCEEDED (own phase)"] += 1
    faults["server restart (the pause must survive one; a second ends it in the store)"] += (
        run.restarts
    )
    sse_events = sum(len(v.events) for v in run.viewers)
    meta = [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", f"{len(os.sched_getaffinity(0))} CPUs (nproc), {os.uname().machine}"),
        ("command", f"`{command}`"),
        ("duration", f"{run.duration:.0f} s in all; faults for {run.chaos_seconds:.0f} s"),
        ("result", "PASS" if all(c.ok for c in found) else "**FAIL**"),
        (
            "load",
            f"{len(USERS)} accounts ({len(run.published)} published, {len(run.revoked)} revoked),"
            f" {len(run.viewers)} SSE viewers, {t.requests} viewer requests, {sse_events} SSE"
            f" events",
        ),
        ("token refreshes", str(run.calls.get("token:refresh_token", 0))),
    ]
    log_rows = [(n, m) for m, n in run.log.messages.most_common(15)]
    sections = [
        ("Viewer requests", _requests_table(t)),
        ("SSE viewers (events received)", _sse_table(run)),
        ("Accounts at the end", _accounts_table(run)),
        ("Faults injected", table(["kind", "count"], faults.most_common())),
        (
            "Upstream calls (simulator counters, viewer phase to the end; faulted calls included)",
            _calls_table(run.calls),
        ),
        ("Phases", table(["phase", "seconds"], [(p, f"{s:.1f}") for p, s in run.phases])),
        ("Server log (WARNING and above), by message", table(["count", "message"], log_rows)),
    ]
    if t.server_errors:
        sections.append(("5xx answers (first 40)", "```\n" + "\n".join(t.server_errors) + "\n```"))
    if run.log.bad:
        sections.append(("Server log errors", "```\n" + "\n".join(run.log.bad) + "\n```"))
    if run.chaos and run.chaos.control_errors:
        errors = "\n".join(run.chaos.control_errors[:20])
        sections.append(("Control API errors", f"```\n{errors}\n```"))
    text = render("Fault soak", meta, found, sections, NOTES)
    return text, found


NOTES = [
    "The hour-long 429 (`Retry-After: 3600`, reason QUOTA_EXCEEDED) runs as its own phase before"
    " the chaos: the server rightly pauses *all* polling for an hour, which a 150 s soak cannot"
    " wait out. The phase checks that viewers are told `stale: true` and that the simulator sees"
    " no call at all for 8 s, then restarts the server: the pause is stored with the accounts, so"
    " it must hold for another 8 s with no call (a restart that clears it fails the check). The"
    " soak then ends the stored pause with the server stopped, as an operator would once Spotify"
    " lifted it, and restarts it for the chaos.",
    "A 503 from `/api/spotify` or `/p/{id}.json` is by design when the server has no data at all"
    " for an account (first poll failed): it carries `Retry-After`. It is counted apart from"
    " other 5xx; the soak starts faults only once every viewer has a first event, so any 503"
    " during the run means an account lost its data.",
    "Refresh tokens rotate on every refresh, so the stored-token check refreshes at the"
    " simulator only after the server has stopped; a token that works is the simulator's current"
    " one (a lost rotation would leave a revoked one in the database).",
    "Slow answers stay under the server's 5 s read timeout. Outside the soak, a token answer"
    " slower than that (e.g. `delay: 5.3` on `token`, then `tokens/expire`) loses the account:"
    " the simulator finishes the refresh and rotates the token after the server gave up, the"
    " server's retry sends the old token, gets `invalid_grant`, and marks the account"
    " reconnect_required, with nothing in its log at WARNING.",
    "The per-address abuse limits (`NOWPLAYING_LOGIN_RATE_PER_MINUTE`,"
    " `NOWPLAYING_PUBLIC_RATE_PER_SECOND`) are set to 0 for the soak: its whole audience comes"
    " from 127.0.0.1, which those limits would rightly refuse.",
    "Only the single-server soak runs here; the PostgreSQL + Redis scale-out is covered by"
    " `tests/procs/test_multi_instance.py`.",
]
