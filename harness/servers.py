"""Server processes on 127.0.0.1 (``nowplaying serve`` in demo mode) and an HTTP sign-in.

Each server runs in its own process (:class:`ServerProcess`), so a test, a load generator or a
bench never shares a GIL with it; it is always stopped on the way out (terminate, then kill).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx

from harness.helpers import consent, lastfm_allow
from harness.live_server import free_port

START_SECONDS = 20.0
CONTROL = "/spotify-sim/_control/users/demo/player"
"""The demo's simulated player, under its control API."""


@dataclass
class ServerProcess:
    """A running server: its URL and process; ``rss_kb()`` and ``cpu_seconds()`` read /proc."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc status")

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far."""
        return self.cpu_of(self.proc.pid)

    @staticmethod
    def cpu_of(pid: int) -> float:
        """User + system CPU time process ``pid`` has used so far."""
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def run(
    cmd: list[str],
    env: Mapping[str, str],
    cwd: Path,
    port: int,
    wrapper: Sequence[str] = (),
) -> Iterator[ServerProcess]:
    """``cmd`` as a server process (under ``wrapper``, e.g. valgrind, whose own start is slow)."""
    log = cwd / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*wrapper, *cmd], env={**os.environ, **env}, cwd=cwd, stdout=out, stderr=out
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_ready(server, START_SECONDS * (10 if wrapper else 1))
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_ready(server: ServerProcess, seconds: float = START_SECONDS) -> None:
    """Return once ``server`` answers /healthz below 500; raise with its log's tail if it exits
    or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            break
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    tail = server.log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"server {server.url} did not start:\n{tail}")


@contextlib.contextmanager
def nowplaying_server(
    poll_seconds: float = 5.0,
    extra_env: Mapping[str, str] | None = None,
    port: int | None = None,
    wrapper: Sequence[str] = (),
    args: Sequence[str] = (),
) -> Iterator[ServerProcess]:
    """``nowplaying serve`` in demo mode (the simulator mounted in-process), a fresh database;
    ``extra_env`` adds or overrides settings (e.g. the log level); ``port`` is free by default;
    ``wrapper`` is a command it runs under (valgrind); ``args`` are more options of ``serve``
    (``--http h11``)."""
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="np-bench-") as tmp:
        env = {
            "SPOTIFY_CLIENT_ID": "",  # demo mode, whatever the calling shell has set
            "SPOTIFY_REDIRECT_URI": f"http://127.0.0.1:{port}/callback",
            "NOWPLAYING_DATABASE_URL": f"sqlite:///{tmp}/nowplaying.sqlite3",
            "NOWPLAYING_POLL_SECONDS": str(poll_seconds),
            "NOWPLAYING_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        cmd = [sys.executable, "-m", "nowplaying.cli", "serve", "--host", "127.0.0.1", *args]
        # cwd is the temporary directory, so a developer's .env cannot leave demo mode.
        with run([*cmd, "--port", str(port)], env, Path(tmp), port, wrapper) as server:
            yield server


# -- signing in over HTTP -----------------------------------------------------------------------


def _keep_cookies(jar: dict[str, str], response: httpx.Response) -> None:
    for header in response.headers.get_list("set-cookie"):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        for name, morsel in parsed.items():
            jar[name] = morsel.value


def _cookie_header(jar: Mapping[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in jar.items())


async def sign_in(base_url: str) -> str:
    """Walk /login → consent (Agree, as "demo") → /callback; the session's ``Cookie`` header.

    The cookies are ``Secure``, which httpx keeps off plain http, so they are carried by hand.
    """

    async def agree(url: str) -> httpx.Response:
        async with httpx.AsyncClient(follow_redirects=False, timeout=10) as browser:
            return await consent(browser, url)

    return await _sign_in(base_url, "/login", agree)


async def published_events(base_url: str) -> str:
    """Sign in as the demo listener, publish the widget and read its JSON once (so its poller
    runs): the path of its public event stream."""
    cookie = await sign_in(base_url)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        answer = await http.post(
            "/api/account/publish", headers={"Cookie": cookie, "Origin": base_url}
        )
        answer.raise_for_status()
        path = f"/p/{answer.json()['publicId']}/events"
        (await http.get(path.removesuffix("/events") + ".json")).raise_for_status()
    return path


async def sign_in_with_lastfm(base_url: str, user: str = "demo") -> str:
    """Walk /login/lastfm → the simulated Last.fm's consent (allow, as ``user``) →
    /callback/lastfm on a demo server; the session's ``Cookie`` header."""
    return await _sign_in(base_url, "/login/lastfm", lambda url: lastfm_allow(url, user))


async def sign_in_with_listenbrainz(base_url: str, token: str) -> str:
    """POST a ListenBrainz user token to /login/listenbrainz (the page's form, same origin) on a
    demo server; the session's ``Cookie`` header."""
    jar: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base_url, follow_redirects=False, timeout=10) as http:
        done = await http.post(
            "/login/listenbrainz",
            content=urlencode({"token": token}),
            headers={"Origin": base_url, "Content-Type": "application/x-www-form-urlencoded"},
        )
        if done.status_code != 303:
            raise RuntimeError(
                f"/login/listenbrainz answered {done.status_code}: {done.text[:300]}"
            )
        _keep_cookies(jar, done)
    session = {k: v for k, v in jar.items() if k.endswith("np_session")}
    if not session:
        raise RuntimeError("no session cookie after /login/listenbrainz")
    return _cookie_header(session)


async def _sign_in(
    base_url: str, login_path: str, agree: Callable[[str], Awaitable[httpx.Response]]
) -> str:
    """``login_path``, ``agree`` on the page it leads to, then back: the session's cookie."""
    jar: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base_url, follow_redirects=False, timeout=10) as http:
        login = await http.get(login_path)
        if login.status_code != 302:
            raise RuntimeError(f"{login_path} answered {login.status_code}")
        _keep_cookies(jar, login)
        agreed = await agree(login.headers["location"])
        if agreed.status_code not in (302, 303):
            raise RuntimeError(f"consent answered {agreed.status_code}")
        back = urlsplit(agreed.headers["location"])
        done = await http.get(f"{back.path}?{back.query}", headers={"Cookie": _cookie_header(jar)})
        if done.status_code != 303:
            raise RuntimeError(f"{back.path} answered {done.status_code}: {done.text[:300]}")
        _keep_cookies(jar, done)
    session = {k: v for k, v in jar.items() if k.endswith("np_session")}
    if not session:
        raise RuntimeError(f"no session cookie after {back.path}")
    return _cookie_header(session)
