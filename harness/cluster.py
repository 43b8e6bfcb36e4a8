"""Real processes for life-cycle tests: ``nowplaying serve`` instances sharing PostgreSQL and
Redis, one ``nowplaying simulator``, and a :class:`~harness.balancer.Balancer` in front of them
as the one public origin (every instance's ``SPOTIFY_REDIRECT_URI`` is the balancer's).

The cluster is driven synchronously (``subprocess``; the balancer in its own thread), so async
tests call its blocking methods through ``asyncio.to_thread`` and Playwright's sync tests call
them directly. Each instance's log goes to ``<logs>/instance-<i>.log`` (appended across
restarts) for the failure message.

Also the pieces the multi-instance test and bench (``bench/multi.py``) share: an SSE
:class:`Viewer` and its :func:`watch`, the simulator's call counters (:func:`sim_calls`) and a
bounded :func:`wait_for`.
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
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.error import URLError
from urllib.request import Request, urlopen

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from harness.balancer import ThreadedBalancer
from harness.helpers import consent
from harness.live_server import free_port
from harness.services import POSTGRES_URL, REDIS_URL, require

ROOT = Path(__file__).resolve().parent.parent
SECRET = "life-cycle-test-secret-key-0123456789abcdef"
CLIENT_SECRET = "cluster-secret"
SHUTDOWN_SECONDS = 5.0
T = TypeVar("T")


@pytest.fixture(scope="module")
def module_loop() -> str:
    """anyio's backend at module scope, so a module's cluster fixture and its viewers live on
    one loop for every test (a test module sets ``anyio_backend = module_loop``)."""
    return "asyncio"


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh loop in another thread (callable from any code,
    including inside a running loop or under Playwright's sync API)."""
    box: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            box.append(asyncio.run(coro))
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]


@dataclass
class Restart:
    """One instance's restart, in monotonic seconds."""

    instance: int
    signalled: float
    exited: float
    up: float

    @property
    def shutdown(self) -> float:
        return self.exited - self.signalled


@dataclass
class Cluster:
    sim_url: str
    env: dict[str, str]
    ports: list[int]
    balancer: ThreadedBalancer
    logs: Path
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    restarts: list[Restart] = field(default_factory=list)

    @property
    def public(self) -> str:
        """The one address viewers use (the balancer)."""
        return f"http://127.0.0.1:{self.balancer.port}"

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def start(self, i: int) -> None:
        with (self.logs / f"instance-{i}.log").open("ab") as log:
            self.procs[i] = subprocess.Popen(
                [sys.executable, "-m", "nowplaying.cli", "serve", "--port", str(self.ports[i])],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_up(self, i: int, seconds: float = 30) -> None:
        """Wait (bounded) until instance ``i`` answers ``/healthz``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            proc = self.procs.get(i)
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"instance {i} exited {proc.returncode}:\n{self.log_tail(i)}")
            with (
                contextlib.suppress(URLError, OSError),
                urlopen(f"{self.url(i)}/healthz", timeout=2) as r,  # noqa: S310 - loopback
            ):
                if r.status == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"instance {i} not up within {seconds:g}s:\n{self.log_tail(i)}")

    def stop(self, i: int, seconds: float = SHUTDOWN_SECONDS + 5) -> float:
        """SIGTERM instance ``i`` and wait for it to exit; returns how long that took.

        Fails (after a SIGKILL) when it is still running ``seconds`` later.
        """
        proc = self.procs.pop(i)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise AssertionError(
                f"instance {i} still running {seconds:g}s after SIGTERM:\n{self.log_tail(i)}"
            ) from None
        return time.monotonic() - started

    def start_and_wait(self, i: int) -> None:
        self.start(i)
        self.wait_up(i)

    def restart(self, i: int) -> Restart:
        """SIGTERM, wait for the exit, start again on the same port, wait for ``/healthz``."""
        signalled = time.monotonic()
        self.stop(i)
        exited = time.monotonic()
        self.start_and_wait(i)
        r = Restart(i, signalled, exited, time.monotonic())
        self.restarts.append(r)
        return r

    def kill(self, i: int) -> None:
        proc = self.procs.pop(i)
        proc.kill()
        proc.wait(10)

    def log_tail(self, i: int, lines: int = 40) -> str:
        path = self.logs / f"instance-{i}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """POST to the simulator's control API (``player`` reads a player's state)."""
        req = Request(  # noqa: S310 - loopback URL built by the test
            f"{self.sim_url}/_control/{path}",
            data=json.dumps(body or {}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urlopen(req, timeout=5) as response:  # noqa: S310
            return json.loads(response.read() or b"null")

    def player(self, user: str) -> dict[str, Any]:
        """What the simulator plays for ``user`` now."""
        with urlopen(f"{self.sim_url}/_control/users/{user}/player", timeout=5) as r:  # noqa: S310
            result: dict[str, Any] = json.loads(r.read())
            return result


async def _admin(statement: str) -> None:
    """Run one statement on the PostgreSQL server's default database."""
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


async def _create_database(db: str) -> None:
    await _admin(f"CREATE DATABASE {db}")


async def _drop_database(db: str) -> None:
    await _admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


async def _flush_redis() -> None:
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        await r.flushdb()
    finally:
        await r.aclose()


@contextlib.contextmanager
def cluster(
    logs: Path,
    *,
    instances: int = 3,
    users: int = 5,
    poll: float = 1.0,
    env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """Start the simulator, the balancer and ``instances`` servers; every user plays."""
    require(POSTGRES_URL, "PostgreSQL")
    require(REDIS_URL, "Redis")
    db = f"np_life_{secrets.token_hex(4)}"
    run_async(_create_database(db))
    run_async(_flush_redis())
    logs.mkdir(parents=True, exist_ok=True)
    sim_port = free_port()
    with (logs / "simulator.log").open("ab") as sim_log:
        sim = subprocess.Popen(
            [
                sys.executable, "-m", "nowplaying.cli", "simulator", "--port", str(sim_port),
                "--client-id", "cid", "--client-secret", CLIENT_SECRET, "--users", str(users),
            ],
            cwd=ROOT, stdout=sim_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    sim_url = f"http://127.0.0.1:{sim_port}"
    ports = [free_port() for _ in range(instances)]
    balancer = ThreadedBalancer(ports)
    balancer.start()
    public = f"http://127.0.0.1:{balancer.port}"
    c = Cluster(
        sim_url=sim_url,
        env={
            **{
                k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "NOWPLAYING_"))
            },
            "SPOTIFY_CLIENT_ID": "cid",
            "SPOTIFY_CLIENT_SECRET": CLIENT_SECRET,
            "SPOTIFY_ACCOUNTS_URL": sim_url,
            "SPOTIFY_API_URL": f"{sim_url}/v1",
            "SPOTIFY_REDIRECT_URI": f"{public}/callback",
            "NOWPLAYING_SECRET_KEY": SECRET,
            "NOWPLAYING_DATABASE_URL": POSTGRES_URL.rsplit("/", 1)[0] + f"/{db}",
            "NOWPLAYING_REDIS_URL": REDIS_URL,
            "NOWPLAYING_POLL_SECONDS": str(poll),
            "NOWPLAYING_SHUTDOWN_SECONDS": str(SHUTDOWN_SECONDS),
            "NOWPLAYING_LOGIN_RATE_PER_MINUTE": "0",
            "NOWPLAYING_LOG_LEVEL": "WARNING",
            **(env or {}),
        },
        ports=ports,
        balancer=balancer,
        logs=logs,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                c.control("calls/reset")
                break
            except (URLError, OSError):
                if time.monotonic() > deadline or sim.poll() is not None:
                    raise
                time.sleep(0.05)
        for n in range(1, users + 1):  # no silent gaps: every account is always playing
            c.control(f"users/user{n}/player/play", {"item": n})
        c.start(0)  # the first instance migrates the schema alone
        c.wait_up(0)
        for i in range(1, instances):
            c.start(i)
        for i in range(1, instances):
            c.wait_up(i)
        yield c
    finally:
        for i in list(c.procs):
            c.kill(i)
        balancer.close()
        sim.kill()
        sim.wait(10)
        run_async(_flush_redis())
        run_async(_drop_database(db))


async def login(public: str, user: str) -> str:
    """Connect ``user`` through the public address; returns the session cookie (name=value)."""
    async with httpx.AsyncClient(timeout=10) as browser:
        start = await browser.get(f"{public}/login")
        assert start.status_code == 302, start.text
        login_cookie = start.headers["set-cookie"].split(";")[0]
        redirect = await consent(browser, start.headers["location"], user=user)
        back = await browser.get(redirect.headers["location"], headers={"Cookie": login_cookie})
        assert back.status_code == 303, back.text
        return next(
            v.split(";")[0] for v in back.headers.get_list("set-cookie") if "np_session=" in v
        )


@dataclass
class Viewer:
    """One SSE viewer of ``account`` on instance ``instance``: what it got, and how it ended."""

    instance: int
    account: str
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    ended: bool = False


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


async def sim_calls(http: httpx.AsyncClient, c: Cluster) -> dict[str, int]:
    """The simulator's call counters (``currently-playing``, ``token:refresh_token``, ...)."""
    result: dict[str, int] = (await http.get(f"{c.sim_url}/_control/calls")).json()
    return result


async def wait_for(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> float:
    """Wait (bounded) until ``check()``; returns how long it took. An HTTP error counts as not
    yet (an instance restarting)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        with contextlib.suppress(httpx.HTTPError):
            if await check():
                return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {seconds:g}s: {what}")
