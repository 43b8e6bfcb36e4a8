"""A real `nowplaying serve` on a SQLite file beside a `nowplaying simulator` process, both on
loopback, with a sign-in through the server's /login: the single-instance process tests' setup
(a quota pause across a restart, event ids across a restart)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from harness.helpers import consent
from harness.live_server import free_port

ROOT = Path(__file__).resolve().parents[1]
SECRET = "pause-restart-test-secret-key-0123456789abcdef"
HOUR = 3600


async def wait_for(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    """Wait (bounded) until ``check()`` holds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if await check():
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {seconds:g}s: {what}")


@dataclass
class Server:
    """One `nowplaying serve` process; its output goes to ``log``."""

    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, http: httpx.AsyncClient) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nowplaying.cli", "serve", "--port", str(self.port)],
                env=self.env,
                cwd=self.log.parent,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
            )

        async def up() -> bool:
            return (await http.get(f"{self.url}/healthz", timeout=2)).status_code == 200

        await wait_for(up, 30, "server up")

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@contextlib.asynccontextmanager
async def server_and_simulator(tmp_path: Path) -> AsyncIterator[tuple[Server, str]]:
    sim_port = free_port()
    sim = subprocess.Popen(
        [
            sys.executable, "-m", "nowplaying.cli", "simulator", "--port", str(sim_port),
            "--client-id", "cid", "--client-secret", "pause-secret", "--users", "1",
            "--redirect-uri", "http://127.0.0.1:0/callback",
        ],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    sim_url = f"http://127.0.0.1:{sim_port}"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "NOWPLAYING_"))},
        "PYTHONPATH": str(ROOT / "src"),
        "SPOTIFY_CLIENT_ID": "cid",
        "SPOTIFY_CLIENT_SECRET": "pause-secret",
        "SPOTIFY_ACCOUNTS_URL": sim_url,
        "SPOTIFY_API_URL": f"{sim_url}/v1",
        "SPOTIFY_REDIRECT_URI": f"http://127.0.0.1:{port}/callback",
        "NOWPLAYING_SECRET_KEY": SECRET,
        "NOWPLAYING_DATABASE_URL": f"sqlite:///{tmp_path}/np.sqlite3",
        "NOWPLAYING_LOG_LEVEL": "INFO",
        "NOWPLAYING_SHUTDOWN_SECONDS": "3",
    }
    server = Server(port, env, tmp_path / "server.log")
    try:
        async with httpx.AsyncClient() as http:

            async def sim_up() -> bool:
                return (await http.get(f"{sim_url}/_control/calls", timeout=2)).is_success

            await wait_for(sim_up, 20, "simulator up")
            await http.post(f"{sim_url}/_control/users/user1/player/play", json={"item": 1})
        yield server, sim_url
    finally:
        server.kill()
        sim.kill()
        sim.wait(10)


async def login_and_publish(http: httpx.AsyncClient, server: Server) -> str:
    """Connect user1 through the server's /login and publish it; returns the public id."""
    start = await http.get(f"{server.url}/login")
    login_cookie = start.headers["set-cookie"].split(";")[0]
    redirect = await consent(http, start.headers["location"], user="user1")
    back = await http.get(redirect.headers["location"], headers={"Cookie": login_cookie})
    assert back.status_code == 303, back.text
    session = next(
        v.split(";")[0] for v in back.headers.get_list("set-cookie") if "np_session=" in v
    )
    published = await http.post(
        f"{server.url}/api/account/publish",
        headers={"Cookie": session, "Origin": server.url},
    )
    assert published.status_code == 200, published.text
    public_id: str = published.json()["publicId"]
    return public_id
