"""The processes the soaks drive, on 127.0.0.1 only: a simulated Spotify and the servers.

Each runs as ``python -m nowplaying.cli`` in the soak's temporary directory (so a developer's
``.env`` cannot leak in), with stderr captured to a file there. :meth:`Proc.stop` asks politely
(SIGTERM), then kills, and says how long the exit took; the soaks call it in ``finally`` whatever
happened. :func:`server` is the fault soak's single SQLite server, :func:`instance` one of the
life-cycle soak's PostgreSQL + Redis instances behind a shared public origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from harness.helpers import ONE_ADDRESS_AUDIENCE
from harness.live_server import free_port

CLIENT_ID = "soak-client"
CLIENT_SECRET = "soak-client-secret-0123456789"
SECRET_KEY = "soak-secret-key-0123456789abcdef-0123456789abcdef"
START_SECONDS = 30.0


class SoakError(RuntimeError):
    """The soak could not set itself up (a process did not start, a login failed)."""


@dataclass
class Proc:
    """One child process; its stderr (and stdout) go to ``log``, appended across restarts."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    kills: int = field(default=0)
    """How often :meth:`stop` had to SIGKILL (no graceful exit within the grace period)."""
    exits: list[Exit] = field(default_factory=list)
    """Every stop of a running process: how long it took, and how it ended."""

    def start(self) -> None:
        with self.log.open("ab") as out:
            out.write(f"--- soak: starting {self.name} ---\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.cmd,
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
            )

    def stop(self, grace: float = 10.0) -> Exit | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Safe to call twice.

        Blocks the caller (use :meth:`stop_async` on an event loop that must keep running).
        """
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return None
        started = time.monotonic()
        proc.terminate()
        killed = False
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.kills += 1
            killed = True
            proc.kill()
            proc.wait(10)
        done = Exit(time.monotonic() - started, proc.returncode, killed)
        self.exits.append(done)
        return done

    async def stop_async(self, grace: float = 10.0) -> Exit | None:
        """:meth:`stop` in a thread, so viewers on this event loop keep being served meanwhile."""
        return await asyncio.to_thread(self.stop, grace)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass(frozen=True)
class Exit:
    """How one stop ended: seconds from SIGTERM to exit, the exit status, SIGKILL needed."""

    seconds: float
    returncode: int
    killed: bool


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "NOWPLAYING_"))}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "nowplaying.cli", *args]


def simulator(tmp: Path, *, users: int, server_port: int) -> tuple[Proc, str]:
    """A ``nowplaying simulator`` with ``users`` extra users, rotating refresh tokens."""
    port = free_port()
    cmd = _cli(
        "simulator", "--port", str(port), "--users", str(users),
        "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
        "--redirect-uri", f"http://127.0.0.1:{server_port}/callback",
        "--refresh-mode", "rotate",
    )  # fmt: skip
    return Proc(
        "simulator", cmd, _clean_env(), tmp, tmp / "simulator.log"
    ), f"http://127.0.0.1:{port}"


def server(tmp: Path, *, sim_url: str, port: int, poll_seconds: float) -> tuple[Proc, Path]:
    """A ``nowplaying serve`` against the simulator, on a SQLite file in ``tmp``."""
    db = tmp / "nowplaying.sqlite3"
    env = {
        **_clean_env(),
        "SPOTIFY_CLIENT_ID": CLIENT_ID,
        "SPOTIFY_CLIENT_SECRET": CLIENT_SECRET,
        "SPOTIFY_ACCOUNTS_URL": sim_url,
        "SPOTIFY_API_URL": f"{sim_url}/v1",
        "SPOTIFY_REDIRECT_URI": f"http://127.0.0.1:{port}/callback",
        "NOWPLAYING_SECRET_KEY": SECRET_KEY,
        "NOWPLAYING_DATABASE_URL": f"sqlite:///{db}",
        "NOWPLAYING_POLL_SECONDS": str(poll_seconds),
        "NOWPLAYING_LOG_LEVEL": "WARNING",
        # Every viewer comes from 127.0.0.1: per-address abuse limits would refuse the audience.
        "NOWPLAYING_LOGIN_RATE_PER_MINUTE": "0",
        **ONE_ADDRESS_AUDIENCE,
    }
    cmd = _cli("serve", "--host", "127.0.0.1", "--port", str(port))
    return Proc("server", cmd, env, tmp, tmp / "server.log"), db


def instance(
    tmp: Path,
    name: str,
    *,
    port: int,
    env: dict[str, str],
) -> Proc:
    """One ``nowplaying serve`` of a cluster on ``port``; ``env`` from :func:`cluster_env`."""
    cmd = _cli("serve", "--host", "127.0.0.1", "--port", str(port))
    return Proc(name, cmd, {**_clean_env(), **env}, tmp, tmp / f"{name}.log")


def cluster_env(
    *,
    sim_url: str,
    origin: str,
    database_url: str,
    redis_url: str,
    secret_key: str,
    old_keys: list[str],
    poll_seconds: float,
) -> dict[str, str]:
    """The settings every instance of a cluster (and its CLI commands) shares."""
    return {
        **_clean_env(),
        "SPOTIFY_CLIENT_ID": CLIENT_ID,
        "SPOTIFY_CLIENT_SECRET": CLIENT_SECRET,
        "SPOTIFY_ACCOUNTS_URL": sim_url,
        "SPOTIFY_API_URL": f"{sim_url}/v1",
        "SPOTIFY_REDIRECT_URI": f"{origin}/callback",
        "NOWPLAYING_SECRET_KEY": secret_key,
        "NOWPLAYING_OLD_SECRET_KEYS": json.dumps(old_keys),
        "NOWPLAYING_DATABASE_URL": database_url,
        "NOWPLAYING_REDIS_URL": redis_url,
        "NOWPLAYING_POLL_SECONDS": str(poll_seconds),
        "NOWPLAYING_LOG_LEVEL": "WARNING",
        "NOWPLAYING_LOGIN_RATE_PER_MINUTE": "0",
        **ONE_ADDRESS_AUDIENCE,
    }


def cli(*args: str) -> list[str]:
    """The argv of a ``nowplaying`` command run with this interpreter."""
    return _cli(*args)


async def wait_up(
    http: httpx.AsyncClient, proc: Proc, url: str, *, host: str | None = None
) -> float:
    """Wait (at most START_SECONDS) until ``url`` answers 200; how long it took.

    ``host``: the Host header to send (an instance behind a balancer trusts only the public one).
    """
    started = time.monotonic()
    headers = {"Host": host} if host else {}
    while time.monotonic() - started < START_SECONDS:
        if not proc.alive:
            break
        with contextlib.suppress(httpx.HTTPError):
            if (await http.get(url, timeout=2, headers=headers)).status_code == 200:
                return time.monotonic() - started
        await asyncio.sleep(0.1)
    tail = proc.log.read_text(errors="replace")[-2000:]
    raise SoakError(f"{proc.name} did not come up at {url}:\n{tail}")
