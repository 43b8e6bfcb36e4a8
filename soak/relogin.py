"""One CLI re-login of a revoked account, beside the running cluster.

The account's grant is revoked at the simulator; every instance must then answer
``reconnect_required`` for it. ``nowplaying login`` runs as its own process with the cluster's
settings: its redirect URI is the balancer's address, which it cannot listen on (the balancer
holds the port, as a server holds it on a single machine), so the redirect goes where a browser
would send it, through the balancer to a running instance's ``/callback``, which hands it to the
CLI through the store. The CLI must exit 0, and every instance, asked directly, must serve the
account live again within :data:`LIVE_TARGET` seconds without a restart.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

import httpx
from harness.helpers import consent

from soak import procs
from soak.cluster import INSTANCES, Cluster

LIVE_TARGET = 10.0
URL = re.compile(r"https?://\S+/authorize\?\S+")


@dataclass
class Relogin:
    account: str
    revoked_at: float = 0.0
    reconnect_everywhere: float | None = None
    """Seconds from the revoke until every instance answered reconnect_required."""
    cli_exit: int | None = None
    cli_output: str = ""
    callback_status: int | None = None
    callback_at: float = 0.0
    live_everywhere: float | None = None
    """Seconds from the callback until every instance served the account live."""
    per_instance: dict[int, str] = field(default_factory=dict)
    error: str = ""
    done_at: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.reconnect_everywhere is not None
            and self.cli_exit == 0
            and self.live_everywhere is not None
            and self.live_everywhere <= LIVE_TARGET
        )


async def _states(
    http: httpx.AsyncClient, c: Cluster, cookie: str, public_id: str | None
) -> dict[int, str]:
    """Instance -> ``live``, ``reconnect_required`` or what else it answered, asked directly."""
    out: dict[int, str] = {}
    for i in range(INSTANCES):
        headers = {"Host": c.host, "Cookie": cookie}
        try:
            r = await http.get(f"{c.url(i)}/api/spotify", headers=headers, timeout=5)
            body = r.json()
            state = body.get("error") or ("stale" if body.get("stale") else "live")
            if public_id is not None and state == "live":
                p = await http.get(f"{c.url(i)}/p/{public_id}.json", headers={"Host": c.host})
                pub = p.json()
                state = pub.get("error") or ("stale" if pub.get("stale") else "live")
            out[i] = (
                state if state in ("live", "reconnect_required") else f"{r.status_code} {state}"
            )
        except (httpx.HTTPError, ValueError) as e:
            out[i] = type(e).__name__
    return out


async def _until_all(
    http: httpx.AsyncClient,
    c: Cluster,
    res: Relogin,
    *,
    cookie: str,
    public_id: str | None,
    want: str,
    seconds: float,
) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        res.per_instance = await _states(http, c, cookie, public_id)
        if all(s == want for s in res.per_instance.values()):
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    return None


async def relogin(
    http: httpx.AsyncClient, c: Cluster, user: str, cookie: str, public_id: str | None
) -> Relogin:
    """Revoke ``user``, reconnect it with ``nowplaying login``, time its return everywhere."""
    res = Relogin(user)
    res.revoked_at = time.monotonic()
    await http.post(f"{c.sim_url}/_control/users/{user}/revoke")
    res.reconnect_everywhere = await _until_all(
        http, c, res, cookie=cookie, public_id=public_id, want="reconnect_required", seconds=20
    )
    argv = procs.cli("login")
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=c.env(),
        cwd=c.tmp,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []
    try:
        url = await asyncio.wait_for(_authorize_url(proc, lines), 30)
        if url is None:
            res.error = "the CLI printed no authorize URL"
            return res
        async with httpx.AsyncClient(timeout=10) as browser:
            redirect = await consent(browser, url, user=user)
            location = redirect.headers.get("location", "")
            if not location.startswith(c.origin):
                res.error = f"consent redirected to {location[:80]!r}, not to {c.origin}"
                return res
            back = await browser.get(location)
            res.callback_status, res.callback_at = back.status_code, time.monotonic()
        assert proc.stdout is not None
        rest = await asyncio.wait_for(proc.stdout.read(), 30)
        lines.append(rest.decode(errors="replace"))
        res.cli_exit = await asyncio.wait_for(proc.wait(), 10)
        live = await _until_all(
            http, c, res, cookie=cookie, public_id=public_id, want="live", seconds=20
        )
        if live is not None:  # counted from the callback, not from when this poll began
            res.live_everywhere = time.monotonic() - res.callback_at
    except TimeoutError:
        res.error = "the CLI did not finish within 30 s"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        res.cli_output = "".join(lines)[-1500:]
        res.done_at = time.monotonic()
    return res


async def _authorize_url(proc: asyncio.subprocess.Process, lines: list[str]) -> str | None:
    """Read the CLI's output until it prints the authorize URL."""
    assert proc.stdout is not None
    while raw := await proc.stdout.readline():
        line = raw.decode(errors="replace")
        lines.append(line)
        m = URL.search(line)
        if m:
            return m.group(0)
    return None
