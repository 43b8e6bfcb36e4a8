"""The process cluster the multi-instance bench drives: three ``nowplaying serve`` processes
sharing PostgreSQL and Redis, and a ``nowplaying simulator`` process (loopback only).

Kept from the multi-instance test as it was before that test moved to ``tests/cluster.py``'s
module-scoped scene, so the bench's figures stay comparable with the ones already published.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis
from tests.helpers import consent
from tests.live_server import free_port
from tests.services import POSTGRES_URL, REDIS_URL, require

ACCOUNTS = [f"user{n}" for n in range(1, 6)]
VIEWERS_PER_ACCOUNT = 60
POLL = 2.0
SECRET = "multi-instance-test-secret-key-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Viewer:
    instance: int
    account: str
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    ended: bool = False


@dataclass
class Cluster:
    sim_url: str
    env: dict[str, str]
    ports: list[int]
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, i: int) -> None:
        env = {
            **self.env,
            "SPOTIFY_REDIRECT_URI": f"http://127.0.0.1:{self.ports[i]}/callback",
        }
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "nowplaying.cli", "serve", "--port", str(self.ports[i])],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self, i: int) -> None:
        proc = self.procs.pop(i)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"


async def _wait(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> float:
    """Wait (bounded) until ``check()``; returns how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        with contextlib.suppress(httpx.HTTPError):
            if await check():
                return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {seconds:g}s: {what}")


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[Cluster]:
    require(POSTGRES_URL, "PostgreSQL")
    require(REDIS_URL, "Redis")
    db = f"np_multi_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(POSTGRES_URL)
    await admin.execute(f"CREATE DATABASE {db}")
    redis = aioredis.Redis.from_url(REDIS_URL)
    await redis.flushdb()
    sim_port = free_port()
    sim = subprocess.Popen(
        [
            sys.executable, "-m", "nowplaying.cli", "simulator", "--port", str(sim_port),
            "--client-id", "cid", "--client-secret", "multi-secret", "--users", "5",
        ],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    sim_url = f"http://127.0.0.1:{sim_port}"
    pg = POSTGRES_URL.rsplit("/", 1)[0] + f"/{db}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "NOWPLAYING_"))},
        "SPOTIFY_CLIENT_ID": "cid",
        "SPOTIFY_CLIENT_SECRET": "multi-secret",
        "SPOTIFY_ACCOUNTS_URL": sim_url,
        "SPOTIFY_API_URL": f"{sim_url}/v1",
        "NOWPLAYING_SECRET_KEY": SECRET,
        "NOWPLAYING_DATABASE_URL": pg,
        "NOWPLAYING_REDIS_URL": REDIS_URL,
        "NOWPLAYING_POLL_SECONDS": str(POLL),
        "NOWPLAYING_LOG_LEVEL": "WARNING",
    }
    c = Cluster(sim_url, env, [free_port() for _ in range(3)])
    try:
        async with httpx.AsyncClient() as http:
            await _wait(lambda: _ok(http, f"{sim_url}/_control/calls"), 20, "simulator up")
            for n in range(1, 6):  # no silent gaps: every account is always playing
                await http.post(f"{sim_url}/_control/users/user{n}/player/play", json={"item": n})
            c.start(0)  # the first instance migrates the schema alone
            await _wait(lambda: _ok(http, f"{c.url(0)}/healthz"), 30, "instance 0 up")
            for i in (1, 2):
                c.start(i)
            for i in (1, 2):
                await _wait(lambda i=i: _ok(http, f"{c.url(i)}/healthz"), 30, f"instance {i} up")  # type: ignore[misc]
        yield c
    finally:
        for i in list(c.procs):
            c.kill(i)
        sim.kill()
        sim.wait(10)
        await redis.flushdb()
        await redis.aclose()
        await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        await admin.close()


async def _ok(http: httpx.AsyncClient, url: str) -> bool:
    return (await http.get(url, timeout=2)).status_code == 200


async def login(c: Cluster, user: str) -> str:
    """Connect ``user`` through instance 0; returns the session cookie (name=value)."""
    async with httpx.AsyncClient(timeout=10) as browser:
        start = await browser.get(f"{c.url(0)}/login")
        login_cookie = start.headers["set-cookie"].split(";")[0]
        redirect = await consent(browser, start.headers["location"], user=user)
        back = await browser.get(redirect.headers["location"], headers={"Cookie": login_cookie})
        assert back.status_code == 303, back.text
        return next(
            v.split(";")[0] for v in back.headers.get_list("set-cookie") if "np_session=" in v
        )


async def watch(http: httpx.AsyncClient, c: Cluster, v: Viewer, cookie: str) -> None:
    """One SSE viewer: records every event; an error event or a dropped stream is an error."""
    try:
        async with http.stream(
            "GET", f"{c.url(v.instance)}/api/spotify/events", headers={"Cookie": cookie}
        ) as response:
            if response.status_code != 200:
                v.error = f"status {response.status_code}"
                return
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                    if "error" in data:
                        v.error = data["error"]
                    v.events.append(data)
        v.ended = True
    except httpx.HTTPError as e:
        v.error = type(e).__name__


async def calls(http: httpx.AsyncClient, c: Cluster) -> dict[str, int]:
    result: dict[str, int] = (await http.get(f"{c.sim_url}/_control/calls")).json()
    return result
