"""The life-cycle soak: ``python -m soak lifecycle [--seed N]`` (``make soak-lifecycle``).

Three instances on PostgreSQL + Redis behind one balancer address, a simulated Spotify (6 users,
rotating refresh tokens); 6 accounts sign in over HTTP, 3 publish. 300 SSE viewers that behave
like ``EventSource`` and 30 public JSON/SVG pollers watch through the balancer while the
cluster lives through what months of operation bring:

1. a rolling restart every 20 s (:meth:`Cluster.restart`), each with every access token expired
   just before (so rotating refreshes meet the shutdown) and a track skipped while the instance
   goes away (a change its viewers must not miss);
2. a key rotation as docs/deploy.md describes it: a roll that adds the new key to
   ``NOWPLAYING_OLD_SECRET_KEYS``, a roll that makes it ``NOWPLAYING_SECRET_KEY`` (the old one
   listed; tokens expire at its first step, so refreshes seal with either); then ``rotate-key``
   runs while tokens refresh, and afterwards the new key alone must open every account;
3. a CLI re-login of a revoked account (:mod:`soak.relogin`);
4. Spotify's QUOTA_EXCEEDED lockout across a rolling and a full restart (:mod:`soak.lockout`),
   which ends the soak (the hour-long pause rightly outlives it).

Then every instance stops, and the stored refresh tokens are tried at the simulator. The report
goes to stdout and to the "Latest life-cycle soak" section of ``docs/operations.md``; the exit
status is 1 if a check failed, 2 if the soak could not set itself up. Loopback only; every wait
is bounded; processes, the database and Redis db 15 are cleaned up on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

from nowplaying.crypto import TokenCipher
from nowplaying.store import StoreError, open_store
from soak import procs
from soak.audience import EventSourceViewer, Poller, identity
from soak.checks import Stored, scan_log, try_refresh
from soak.cluster import Cluster, Restart
from soak.life import POLLERS, PUBLISHED, RELOGIN, SSE_VIEWERS, USERS, Life, Rotation, Skip
from soak.lifecycle_report import render_life
from soak.lockout import Lockout, lockout
from soak.relogin import relogin
from soak.viewers import login, publish

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "operations.md"
ROLL_EVERY = 20.0
POLL_SECONDS = 2.0
OLD_KEY = "lifecycle-soak-key-one-0123456789abcdef-0123456789"
NEW_KEY = "lifecycle-soak-key-two-fedcba9876543210-fedcba9876"
BUDGET = 540.0  # the whole run; it takes about 4.5 minutes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m soak lifecycle", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seed", type=int, help="for a repeatable run (printed either way)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/operations.md")
    parser.add_argument("--dump", type=Path, help="write every viewer's events here (JSON)")
    return parser.parse_args(argv)


def audience(
    cookies: dict[str, str], published: dict[str, str]
) -> tuple[list[EventSourceViewer], list[Poller]]:
    """Half the SSE viewers on private streams (every account), half on public ones."""
    half = SSE_VIEWERS // 2
    viewers = [
        EventSourceViewer(u, "sse-private", "/api/spotify/events", cookies[u])
        for u in (USERS[n % len(USERS)] for n in range(half))
    ]
    pub = list(published.items())
    viewers += [
        EventSourceViewer(u, "sse-public", f"/p/{pid}/events")
        for u, pid in (pub[n % len(pub)] for n in range(SSE_VIEWERS - half))
    ]
    pollers = []
    for n in range(POLLERS):
        u, pid = pub[n % len(pub)]
        kind = "json" if n % 2 == 0 else "svg"
        pollers.append(Poller(u, kind, f"/p/{pid}.{kind}"))
    return viewers, pollers


class Soak:
    """The run's moving parts; each method is one step of the life cycle."""

    def __init__(self, life: Life, cluster: Cluster, http: httpx.AsyncClient) -> None:
        self.life, self.c, self.http = life, cluster, http
        self.mark = time.monotonic()

    def phase(self, name: str) -> None:
        now = time.monotonic()
        self.life.phases.append((name, now - self.mark))
        print(f"soak lifecycle: {name}: {now - self.mark:.1f} s", flush=True)
        self.mark = now

    async def roll(self, i: int, label: str, *, expire: bool = False, skip: bool = True) -> Restart:
        """Restart instance ``i``; a track is skipped while it goes away (unless ``skip`` is
        False: during the lockout nothing may reach viewers)."""
        sim = self.c.sim_url
        if expire:
            await self.http.post(f"{sim}/_control/tokens/expire")
        step = asyncio.create_task(self.c.restart(self.http, i, label))
        if not skip:
            record = await step
            self.life.restarts.append(record)
            return record
        await asyncio.sleep(0.5)
        account = USERS[len(self.life.skips) % len(USERS)]
        at = time.monotonic()
        await self.http.post(f"{sim}/_control/users/{account}/player/skip")
        state = (await self.http.get(f"{sim}/_control/users/{account}/player")).json()
        self.life.skips.append(Skip(at, account, (state.get("item") or {}).get("name", ""), label))
        record = await step
        self.life.restarts.append(record)
        return record

    async def slot(self, i: int, label: str, *, expire: bool = False) -> None:
        """One rolling-restart slot: the restart, then the rest of the 20 s."""
        started = time.monotonic()
        record = await self.roll(i, label, expire=expire)
        took = record.exit.seconds if record.exit else float("nan")
        print(f"soak lifecycle:   restarted instance {i} ({label}): exit {took:.1f} s", flush=True)
        await asyncio.sleep(max(0.0, ROLL_EVERY - (time.monotonic() - started)))

    async def rotate_key(self) -> Rotation:
        """``nowplaying rotate-key`` while every account refreshes; then the new key alone."""
        rot = Rotation()
        await self.http.post(f"{self.c.sim_url}/_control/tokens/expire")
        proc = await asyncio.create_subprocess_exec(
            *procs.cli("rotate-key"),
            env=self.c.env(),
            cwd=self.c.tmp,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
        except TimeoutError:
            proc.kill()
            out, _ = await proc.communicate()
            rot.error = "rotate-key did not finish within 60 s"
        rot.exit, rot.output = proc.returncode, out.decode(errors="replace")[-1500:]
        store = open_store(self.c.database_url, cipher=TokenCipher(NEW_KEY))
        try:
            await store.open()
            try:
                accounts = await store.list_accounts()
            finally:
                await store.close()
        except StoreError as e:
            rot.error = f"the new key alone cannot open the store: {e}"
            return rot
        rot.accounts = len(accounts)
        rot.need_old_key = [a.id for a in accounts if a.key_missing]
        return rot

    async def stored_tokens(self) -> None:
        """Every stored refresh token, opened with the keys the cluster ends with, tried."""
        keys = TokenCipher(self.c.secret_key, self.c.old_keys)
        store = open_store(self.c.database_url, cipher=keys)
        await store.open()
        try:
            accounts = await store.list_accounts()
        finally:
            await store.close()
        self.life.stored = {a.id: Stored(str(a.status), a.refresh_token) for a in accounts}
        for stored in self.life.stored.values():
            if stored.refresh_token:
                await try_refresh(self.http, self.c.sim_url, stored)


async def run_life(life: Life, tmp: Path, rng: random.Random) -> None:
    cluster = Cluster(tmp, POLL_SECONDS, len(USERS), OLD_KEY)
    limits = httpx.Limits(max_connections=SSE_VIEWERS + POLLERS + 100)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    async with httpx.AsyncClient(limits=limits, timeout=10) as http:
        s = Soak(life, cluster, http)
        try:
            await cluster.start(http)
            origin = cluster.origin
            cookies = {u: await login(origin, u) for u in USERS}
            published = {u: await publish(http, origin, cookies[u]) for u in PUBLISHED}
            s.phase("start 3 instances, sign in 6 accounts, publish 3")

            life.viewers, life.pollers = audience(cookies, published)
            tasks = [asyncio.create_task(v.run(http, origin, stop)) for v in life.viewers]
            tasks.append(asyncio.create_task(lag_monitor(life, stop)))
            tasks += [
                asyncio.create_task(p.run(http, origin, stop, random.Random(rng.random())))
                for p in life.pollers
            ]
            started = time.monotonic()
            while time.monotonic() - started < 40:
                if all(v.events and v.events[-1].data.get("title") for v in life.viewers):
                    life.warm = time.monotonic() - started
                    break
                await asyncio.sleep(0.25)
            life.watch_from = time.monotonic()
            s.phase("300 SSE viewers and 30 pollers connect")

            for i in range(3):
                await s.slot(i, "rolling restart", expire=True)
            s.phase("rolling restart of every instance")
            cluster.old_keys = [NEW_KEY]  # docs/deploy.md step 2: every instance accepts it
            for i in range(3):
                await s.slot(i, "new key accepted")
            cluster.secret_key, cluster.old_keys = NEW_KEY, [OLD_KEY]
            for i in range(3):  # step 3; tokens rotate at the first: mixed seals must agree
                await s.slot(i, "new key in use", expire=i == 0)
            life.rotation = await s.rotate_key()
            s.phase("key rotation (docs/deploy.md): 2 rolls, then rotate-key")

            started = time.monotonic()
            await s.roll(0, "rolling restart")
            life.relogin = await relogin(
                http, cluster, RELOGIN, cookies[RELOGIN], published.get(RELOGIN)
            )
            await asyncio.sleep(max(0.0, ROLL_EVERY - (time.monotonic() - started)))
            s.phase(f"restart, then revoke {RELOGIN} and reconnect it with `nowplaying login`")

            async def roll(i: int, label: str) -> Restart:
                return await s.roll(i, label, skip=False)

            async def stop_viewers() -> None:
                watching = [v for v in life.viewers if not v.told_to_reconnect]
                stale = sum(1 for v in watching if (v.last or {}).get("stale"))
                life.stale_viewers_in_lockout = (stale, len(watching))
                stop.set()
                for t in tasks:  # an open stream only ends when cancelled
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            life.lockout = Lockout()
            await lockout(
                http,
                cluster,
                cookies,
                roll=roll,
                before_full_restart=stop_viewers,
                res=life.lockout,
            )
            s.phase("QUOTA_EXCEEDED 429: rolling restart, then a full stop and start")

            life.calls = (await http.get(f"{cluster.sim_url}/_control/calls")).json()
            life.final_exits = await cluster.stop_all()
            await s.stored_tokens()
            s.phase("stop every instance, try the stored tokens")
        finally:
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await cluster.close()


async def lag_monitor(life: Life, stop: asyncio.Event) -> None:
    """Record how late the event loop wakes up from a 0.1 s sleep (over 50 ms only)."""
    while not stop.is_set():
        asked = time.monotonic()
        await asyncio.sleep(0.1)
        late = time.monotonic() - asked - 0.1
        if late > 0.05:
            life.loop_lag.append((asked, late))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    command = f"python -m soak lifecycle --seed {seed}"
    life = Life(seed=seed)
    tmp = Path(tempfile.mkdtemp(prefix="np-lifecycle-"))
    print(f"soak lifecycle: {command} (working in {tmp})", flush=True)
    started = time.monotonic()
    try:
        asyncio.run(asyncio.wait_for(run_life(life, tmp, random.Random(seed)), BUDGET))
    except (procs.SoakError, TimeoutError, StoreError, OSError, httpx.HTTPError) as e:
        print(f"soak lifecycle: could not finish: {type(e).__name__}: {e}", file=sys.stderr)
        if not life.viewers:
            return 2  # not even set up: nothing to report
        life.aborted = f"{type(e).__name__}: {str(e)[:300]}"
    finally:
        for log in sorted(tmp.glob("instance*.log")):
            life.logs[log.stem] = scan_log(log)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    life.duration = time.monotonic() - started
    if args.dump:
        dump(life, args.dump)
    text, found = render_life(life, command)
    print(text)
    if not args.no_doc:
        write_section(DOC, text)
        print(f"soak lifecycle: wrote {DOC.relative_to(ROOT)}")
    return 0 if all(c.ok for c in found) else 1


BEGIN = "<!-- lifecycle-soak: begin (written by `python -m soak lifecycle`) -->"
END = "<!-- lifecycle-soak: end -->"


def write_section(doc: Path, text: str) -> None:
    """Replace the generated section of ``doc`` (between the markers) with ``text``."""
    body = doc.read_text(encoding="utf-8") if doc.exists() else ""
    block = f"{BEGIN}\n\n{text.strip()}\n\n{END}"
    if BEGIN in body and END in body:
        head, _, rest = body.partition(BEGIN)
        _, _, tail = rest.partition(END)
        body = head + block + tail
    else:
        body = body.rstrip() + "\n\n## Latest life-cycle soak\n\n" + block + "\n"
    doc.write_text(body, encoding="utf-8")


def dump(life: Life, path: Path) -> None:
    """Every SSE viewer's connections, drops and events (seconds from when all watched)."""
    t0 = life.watch_from
    rows = [
        {
            "account": v.account,
            "kind": v.kind,
            "drops": [
                [round(d.at - t0, 2), d.clean, d.retry_ms, d.back_at and round(d.back_at - t0, 2)]
                for d in v.drops
            ],
            "events": [
                [round(e.at - t0, 2), e.connection, e.id, list(identity(e.data))] for e in v.events
            ],
            "problems": [[round(p.at - t0, 2), p.what] for p in v.problems],
            "waits": [[round(at - t0, 2), round(w, 2)] for at, w in v.waits],
        }
        for v in life.viewers
    ]
    restarts = [
        [r.instance, r.label, round(r.sigterm_at - t0, 2), r.back_at and round(r.back_at - t0, 2)]
        for r in life.restarts
    ]
    path.write_text(json.dumps({"restarts": restarts, "viewers": rows}), encoding="utf-8")
