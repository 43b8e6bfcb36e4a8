"""The fault soak: ``python -m soak [--seconds 150] [--seed N]`` (``make soak``), loopback only.

``python -m soak lifecycle`` runs the life-cycle soak instead (:mod:`soak.lifecycle`: restarts,
key rotation, re-login and the quota lockout on three instances; ``make soak-lifecycle``);
``python -m soak edge`` the edge probe (:mod:`soak.edge`: slow headers and bodies, unfinished
requests past the descriptor limit, stalled readers; ``make soak-edge``).
``python -m soak contract`` the contract probe (:mod:`soak.contract`: schemathesis against
``/openapi.json`` with a published id; ``make soak-contract``).
``python -m soak outage`` the Redis outage probe (:mod:`soak.outage`: Redis killed for 60 s under
two instances and 20 viewers, access tokens expiring in the middle; ``make soak-outage``).

One simulated Spotify (8 users, rotating refresh tokens) and one server process (SQLite, 2 s
polls). Eight accounts sign in over HTTP, four publish a share link. Then:

1. the hour-long 429 phase (:mod:`soak.quota`): the pause must survive a server restart; then
   the soak ends it in the store (as an operator would once Spotify lifted it) and restarts;
2. 200 SSE viewers and 100 polling viewers watch while :mod:`soak.chaos` injects faults for
   ``--seconds`` and revokes two accounts;
3. faults are cleared, and the system gets up to 20 s to settle;
4. the server stops, and the checks read its SQLite file, refresh every stored token at the
   simulator (rotation makes that an end-only check) and scan its log.

The summary goes to stdout and ``docs/soak-latest.md``; the exit status is 1 if a check failed,
2 if the soak could not set itself up. Every wait is bounded, and processes and the temporary
directory are removed on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
from harness.live_server import free_port

from soak import checks, procs
from soak.chaos import Chaos
from soak.checks import scan_log, settle, stored_tokens, try_refresh
from soak.quota import quota_pause
from soak.summary import SETTLE_SECONDS, USERS, Run, render_run
from soak.viewers import SseViewer, Target, login, poll, publish, until, watch

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "soak-latest.md"
PUBLISHED = 4
SSE_VIEWERS = 200
POLLING_VIEWERS = 100
POLL_SECONDS = 2.0
SETUP_BUDGET = 240.0  # everything but the chaos itself: the soak's overall bound


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=150.0, help="how long faults go on")
    parser.add_argument("--seed", type=int, help="for a repeatable run (printed either way)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/soak-latest.md")
    return parser.parse_args(argv)


def sse_targets(cookies: dict[str, str], published: dict[str, str]) -> list[Target]:
    """Half the SSE viewers on the private stream of every account, half on the public ones."""
    private = [Target(u, "sse-private", "/api/spotify/events", cookies[u]) for u in USERS]
    public = [Target(u, "sse-public", f"/p/{pid}/events") for u, pid in published.items()]
    half = SSE_VIEWERS // 2
    return [private[n % len(private)] for n in range(half)] + [
        public[n % len(public)] for n in range(SSE_VIEWERS - half)
    ]


def poll_targets(cookies: dict[str, str], published: dict[str, str]) -> list[Target]:
    """40% ``/api/spotify`` (every account), 30% public JSON, 30% SVG cards."""
    api = [Target(u, "api", "/api/spotify", cookies[u]) for u in USERS]
    json_ = [Target(u, "json", f"/p/{pid}.json") for u, pid in published.items()]
    svg = [Target(u, "svg", f"/p/{pid}.svg") for u, pid in published.items()]
    n_api, n_json = POLLING_VIEWERS * 4 // 10, POLLING_VIEWERS * 3 // 10
    n_svg = POLLING_VIEWERS - n_api - n_json
    return (
        [api[n % len(api)] for n in range(n_api)]
        + [json_[n % len(json_)] for n in range(n_json)]
        + [svg[n % len(svg)] for n in range(n_svg)]
    )


async def run_soak(run: Run, tmp: Path, rng: random.Random) -> None:
    port = free_port()
    sim, sim_url = procs.simulator(tmp, users=len(USERS), server_port=port)
    server, db = procs.server(tmp, sim_url=sim_url, port=port, poll_seconds=POLL_SECONDS)
    base = f"http://127.0.0.1:{port}"
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        run.phases.append((name, now - mark))
        print(f"soak: {name}: {now - mark:.1f} s", flush=True)
        mark = now

    limits = httpx.Limits(max_connections=SSE_VIEWERS + POLLING_VIEWERS + 50)
    try:
        async with httpx.AsyncClient(limits=limits, timeout=10) as http:
            sim.start()
            await procs.wait_up(http, sim, f"{sim_url}/_control/calls")
            server.start()
            await procs.wait_up(http, server, f"{base}/healthz")
            cookies = {u: await login(base, u) for u in USERS}
            for u in sorted(rng.sample(USERS, PUBLISHED)):
                run.published[u] = await publish(http, base, cookies[u])
            others = [u for u in USERS if u not in run.published]
            run.revoked = [rng.choice(list(run.published)), rng.choice(others)]
            phase("start, sign in 8 accounts, publish 4")

            async def restart() -> None:
                server.stop()
                server.start()
                run.restarts += 1
                await procs.wait_up(http, server, f"{base}/healthz")

            async def end_pause() -> None:
                server.stop()
                await checks.end_stored_pause(db)
                server.start()
                run.restarts += 1
                await procs.wait_up(http, server, f"{base}/healthz")

            run.quota = await quota_pause(
                http, base, sim_url, cookies, restart=restart, end_pause=end_pause
            )
            phase("hour-long 429: survives a server restart; then ended in the store")

            await http.post(f"{sim_url}/_control/calls/reset")
            stop = asyncio.Event()
            run.viewers = [SseViewer(t) for t in sse_targets(cookies, run.published)]
            tasks = [
                asyncio.create_task(watch(http, base, v, run.tally, stop)) for v in run.viewers
            ]
            tasks += [
                asyncio.create_task(
                    poll(http, base, t, run.tally, stop=stop, rng=random.Random(rng.random()))
                )
                for t in poll_targets(cookies, run.published)
            ]

            async def all_watching() -> bool:
                return all(v.events for v in run.viewers)

            run.warm = await until(all_watching, 30)
            phase("viewers connect")
            revoke_at = {u: rng.uniform(0.15, 0.7) * run.seconds for u in run.revoked}
            run.chaos = Chaos(http, sim_url, USERS, revoke_at, rng)
            started = time.monotonic()
            try:
                await run.chaos.run(run.seconds)
            finally:
                run.chaos_seconds = time.monotonic() - started
                await run.chaos.calm(run.healthy)
            phase("faults")
            run.settled, run.final = await settle(
                http,
                base,
                cookies,
                run.published,
                revoked=set(run.revoked),
                viewers=run.viewers,
                seconds=SETTLE_SECONDS,
            )
            phase("settle")
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            run.calls = (await http.get(f"{sim_url}/_control/calls")).json()
            server.stop()
            run.stored = await stored_tokens(db)
            for stored in run.stored.values():
                await try_refresh(http, sim_url, stored)
            phase("stop, verify stored tokens")
    finally:
        server.stop()
        sim.stop()
        run.kills = server.kills
        if server.log.exists():
            run.log = scan_log(server.log)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["lifecycle"]:
        from soak.lifecycle import main as lifecycle  # noqa: PLC0415 (only that soak needs it)

        return lifecycle(argv[1:])
    if argv[:1] == ["contract"]:
        from soak.contract import main as contract  # noqa: PLC0415 (only that probe needs it)

        return contract(argv[1:])
    if argv[:1] == ["edge"]:
        from soak.edge import main as edge  # noqa: PLC0415 (only that probe needs it)

        return edge(argv[1:])
    if argv[:1] == ["outage"]:
        from soak.outage import main as outage  # noqa: PLC0415 (only that probe needs it)

        return outage(argv[1:])
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    command = f"python -m soak --seconds {args.seconds:g} --seed {seed}"
    run = Run(seed=seed, seconds=args.seconds)
    tmp = Path(tempfile.mkdtemp(prefix="np-soak-"))
    print(f"soak: {command} (working in {tmp})", flush=True)
    started = time.monotonic()
    try:
        work = run_soak(run, tmp, random.Random(seed))
        asyncio.run(asyncio.wait_for(work, args.seconds + SETUP_BUDGET))
    except (procs.SoakError, TimeoutError) as e:
        print(f"soak: could not finish: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    run.duration = time.monotonic() - started
    text, found = render_run(run, command)
    print(text)
    if not args.no_doc:
        DOC.write_text(text, encoding="utf-8")
        print(f"soak: wrote {DOC.relative_to(ROOT)}")
    return 0 if all(c.ok for c in found) else 1


if __name__ == "__main__":
    raise SystemExit(main())
