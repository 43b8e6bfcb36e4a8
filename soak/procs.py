"""The processes the soak drives, on 127.0.0.1 only: a simulated Spotify and one server.

Each runs as ``python -m nowplaying.cli`` in the soak's temporary directory (so a developer's
``.env`` cannot leak in), with stderr captured to a file there. :meth:`Proc.stop` asks politely
(SIGTERM), then kills; the soak calls it in ``finally`` whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tests.live_server import free_port

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

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.kills += 1
            proc.kill()
            proc.wait(10)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


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
        "NOWPLAYING_PUBLIC_RATE_PER_SECOND": "0",
    }
    cmd = _cli("serve", "--host", "127.0.0.1", "--port", str(port))
    return Proc("server", cmd, env, tmp, tmp / "server.log"), db


async def wait_up(http: httpx.AsyncClient, proc: Proc, url: str) -> float:
    """Wait (at most START_SECONDS) until ``url`` answers 200; how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < START_SECONDS:
        if not proc.alive:
            break
        with contextlib.suppress(httpx.HTTPError):
            if (await http.get(url, timeout=2)).status_code == 200:
                return time.monotonic() - started
        await asyncio.sleep(0.1)
    tail = proc.log.read_text(errors="replace")[-2000:]
    raise SoakError(f"{proc.name} did not come up at {url}:\n{tail}")
