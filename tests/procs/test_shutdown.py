"""Stopping the server: real processes, real signals (loopback only).

``nowplaying serve`` with SSE viewers attached gets ``SIGTERM``/``SIGINT``: every stream ends with
a jittered ``retry:`` hint, the hub and the store close, and the process exits 0 within
``NOWPLAYING_SHUTDOWN_SECONDS`` whatever is connected. ``serve --workers 2`` on a layout that
would lose refresh tokens is refused. Waits are bounded conditions, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvicorn
from harness.helpers import consent
from harness.live_server import free_port
from harness.services import POSTGRES_URL, REDIS_URL, require

from harness import stuck_server
from nowplaying.cli.main import main
from nowplaying.cli.serve import GracefulServer, serve_workers
from nowplaying.config import Settings
from nowplaying.web import create_app

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
SHUTDOWN_SECONDS = 3.0
EXIT_BOUND = SHUTDOWN_SECONDS + 5.0
"""A generous bound on process exit after the signal (behaviour, not a speed claim)."""
RECONNECT_MS = range(500, 3001)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "NOWPLAYING_"))}
    return {
        **env,
        "NOWPLAYING_SHUTDOWN_SECONDS": str(SHUTDOWN_SECONDS),
        "NOWPLAYING_LOG_LEVEL": "INFO",
        "NOWPLAYING_LOGIN_RATE_PER_MINUTE": "0",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> tuple[int, float]:
        """Send ``sig``; the exit status, and how long after the signal the process ended."""
        sent = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(EXIT_BOUND)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            pytest.fail(f"still running {EXIT_BOUND:g}s after {sig.name}:\n{self.text()}")
        return code, time.monotonic() - sent


@contextlib.contextmanager
def _process(cmd: list[str], tmp: Path, env: dict[str, str], port: int) -> Iterator[Served]:
    log = tmp / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=out, stderr=out)
    served = Served(proc, f"http://127.0.0.1:{port}", log)
    try:
        yield served
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def _wait_up(served: Served, path: str = "/healthz") -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert served.proc.poll() is None, served.text()
            with contextlib.suppress(httpx.HTTPError, OSError):
                if (await http.get(served.base + path, timeout=2)).status_code < 500:
                    return
            await asyncio.sleep(0.1)
    pytest.fail(f"server did not come up:\n{served.text()}")


@contextlib.asynccontextmanager
async def demo_server(tmp: Path, *options: str) -> AsyncIterator[Served]:
    """``nowplaying serve`` in demo mode (built-in simulated Spotify), in its own directory;
    ``options`` are more of ``serve``'s (``--http h11``)."""
    port = free_port()
    cmd = [sys.executable, "-m", "nowplaying.cli", "serve", "--port", str(port), *options]
    with _process(cmd, tmp, _env(), port) as served:
        await _wait_up(served)
        yield served


def _cookies(response: httpx.Response, jar: dict[str, str]) -> None:
    # The cookies are Secure, which an http client keeps to itself: carry them by hand.
    for header in response.headers.get_list("set-cookie"):
        jar.update({k: m.value for k, m in SimpleCookie(header).items()})


async def login(http: httpx.AsyncClient, base: str) -> str:
    """/login → the simulator's consent (Agree) → /callback; the session's Cookie header."""
    jar: dict[str, str] = {}
    start = await http.get(f"{base}/login")
    assert start.status_code == 302, start.text
    _cookies(start, jar)
    back = await consent(http, httpx.URL(base).join(start.headers["location"]).__str__())
    assert back.status_code in (302, 303), back.text
    cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
    done = await http.get(
        httpx.URL(base).join(back.headers["location"]), headers={"cookie": cookie}
    )
    assert done.status_code in (302, 303), done.text
    _cookies(done, jar)
    return f"np_session={jar['np_session']}"


@dataclass
class Viewer:
    lines: list[str] = field(default_factory=list)
    events: int = 0
    ended: bool = False
    error: str | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on the first event (or when the stream failed)."""
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def retries(self) -> list[int]:
        return [
            int(line.removeprefix("retry:")) for line in self.lines if line.startswith("retry:")
        ]


async def watch(http: httpx.AsyncClient, url: str, cookie: str, viewer: Viewer) -> None:
    """Read one stream to its end, as an EventSource would."""
    try:
        async with http.stream("GET", url, headers={"cookie": cookie}, timeout=None) as r:
            assert r.status_code == 200
            viewer.opened.set()
            async for line in r.aiter_lines():
                viewer.lines.append(line)
                if line.startswith("data:"):
                    viewer.events += 1
                    viewer.ready.set()
        viewer.ended = True
    except httpx.HTTPError as e:
        viewer.error = f"{type(e).__name__}: {e}"
    finally:
        viewer.ready.set()


async def _viewers(
    http: httpx.AsyncClient, url: str, cookie: str, n: int
) -> tuple[list[Viewer], list[asyncio.Task[None]]]:
    viewers = [Viewer() for _ in range(n)]
    tasks = [asyncio.create_task(watch(http, url, cookie, v)) for v in viewers]
    async with asyncio.timeout(30):
        for v in viewers:
            await v.ready.wait()
    assert all(v.events >= 1 for v in viewers), [v.error for v in viewers]
    return viewers, tasks


@pytest.mark.parametrize(
    ("sig", "stack"),
    [
        (signal.SIGTERM, "httptools parser, uvloop event loop"),
        (signal.SIGINT, "httptools parser, uvloop event loop"),
        (signal.SIGTERM, "h11 parser, asyncio event loop"),
    ],
)
async def test_signal_with_viewers_ends_every_stream_and_exits_0(
    tmp_path: Path, sig: signal.Signals, stack: str
) -> None:
    """20 SSE viewers attached: the signal ends each stream with a jittered retry; exit 0, on
    the compiled server stack and on the pure-Python fallback alike."""
    options = ["--http", "h11", "--loop", "asyncio"] if "h11" in stack else []
    async with demo_server(tmp_path, *options) as served, httpx.AsyncClient() as http:
        cookie = await login(http, served.base)
        viewers, tasks = await _viewers(http, f"{served.base}/api/spotify/events", cookie, 20)
        code, took = await asyncio.to_thread(served.stop, sig)
        async with asyncio.timeout(10):
            await asyncio.gather(*tasks)
    log = served.text()
    assert code == 0, log
    assert took < EXIT_BOUND
    assert [v.error for v in viewers if v.error] == []
    assert all(v.ended for v in viewers)
    hints = [v.retries[-1] for v in viewers]
    assert all(len(v.retries) == 2 for v in viewers)  # the connect preamble, then the hint
    assert all(h in RECONNECT_MS for h in hints)
    assert len(set(hints)) > 1, hints  # jittered, not one value for everyone
    assert f"server stack: uvicorn, {stack}" in log
    assert "shutting down: ending 20 event stream(s)" in log
    assert "shutdown clean" in log and "20 event stream(s) ended with a reconnect hint" in log
    assert "Waiting for connections to close" not in log
    assert "timeout graceful shutdown exceeded" not in log


async def test_graceful_server_in_process_drains_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same server in this process: the exit handler ends the streams, the log counts them."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        spotify_redirect_uri=f"http://127.0.0.1:{(port := free_port())}/callback",
        nowplaying_database_url=f"sqlite:///{tmp_path}/np.sqlite3",
        nowplaying_login_rate_per_minute=0,
    )
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = GracefulServer(config, app, shutdown_seconds=SHUTDOWN_SECONDS)
    assert config.timeout_graceful_shutdown == SHUTDOWN_SECONDS - 0.75  # a reserve for closing
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(15):
        while not server.started:
            assert not serving.done(), "the server stopped while starting"
            await asyncio.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    caplog.set_level(logging.INFO, logger="nowplaying")
    async with httpx.AsyncClient() as http:
        cookie = await login(http, base)
        viewers, tasks = await _viewers(http, f"{base}/api/spotify/events", cookie, 3)
        server.handle_exit(signal.SIGTERM, None)
        async with asyncio.timeout(EXIT_BOUND):
            await asyncio.gather(serving, *tasks)
    assert all(v.ended and v.retries[-1] in RECONNECT_MS for v in viewers)
    assert "shutting down: ending 3 event stream(s) with a reconnect hint" in caplog.text
    assert "shutdown clean" in caplog.text
    assert "3 event stream(s) ended with a reconnect hint" in caplog.text
    assert app.state.services.streams.counts["open"] == 0


async def test_viewers_that_never_read_do_not_hold_the_process(tmp_path: Path) -> None:
    """Raw viewers that never read, and one that never finished its request: exit 0 in time."""
    async with demo_server(tmp_path) as served, httpx.AsyncClient() as http:
        cookie = await login(http, served.base)
        port = int(served.base.rsplit(":", 1)[1])
        silent = []
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(
                b"GET /api/spotify/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + f"Cookie: {cookie}\r\n\r\n".encode()
            )
            silent.append(s)
        half = socket.create_connection(("127.0.0.1", port))
        half.sendall(b"GET /api/spotify/events HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        silent.append(half)
        viewers, tasks = await _viewers(http, f"{served.base}/api/spotify/events", cookie, 1)
        try:
            code, took = await asyncio.to_thread(served.stop)
        finally:
            for s in silent:
                s.close()
        await asyncio.gather(*tasks)
    assert code == 0, served.text()
    assert took < EXIT_BOUND
    assert viewers[0].ended and viewers[0].retries[-1] in RECONNECT_MS
    assert "shutdown clean" in served.text()


async def test_a_stream_that_ignores_the_drain_is_cut_at_the_bound(tmp_path: Path) -> None:
    """A response that never ends by itself is cut off at the bound, and the log says so."""
    port = free_port()
    cmd = [sys.executable, "-m", "harness.stuck_server", str(port), str(SHUTDOWN_SECONDS)]
    with _process(cmd, tmp_path, _env(), port) as served:
        await _wait_up(served, "/nothing")
        async with httpx.AsyncClient() as http:
            viewer = Viewer()
            task = asyncio.create_task(watch(http, f"{served.base}/stuck", "", viewer))
            await asyncio.wait_for(viewer.opened.wait(), 10)
            code, took = await asyncio.to_thread(served.stop)
            await asyncio.wait_for(task, 10)
    log = served.text()
    assert code == 0, log
    assert took < EXIT_BOUND
    assert "shutdown forced" in log and "1 request(s) cut off" in log, log


@contextlib.asynccontextmanager
async def scaled_out(tmp: Path, workers: int) -> AsyncIterator[Served]:
    """``serve --workers N`` on a fresh PostgreSQL database and Redis, against a simulator."""
    require(POSTGRES_URL, "PostgreSQL")
    require(REDIS_URL, "Redis")
    db = f"np_shutdown_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(POSTGRES_URL)
    await admin.execute(f"CREATE DATABASE {db}")
    port, sim_port = free_port(), free_port()
    sim_cmd = [
        sys.executable, "-m", "nowplaying.cli", "simulator", "--port", str(sim_port),
        "--client-id", "cid", "--client-secret", "shutdown-test-secret",
        "--redirect-uri", f"http://127.0.0.1:{port}/callback",
    ]  # fmt: skip
    sim_url = f"http://127.0.0.1:{sim_port}"
    env = _env(
        SPOTIFY_CLIENT_ID="cid",
        SPOTIFY_CLIENT_SECRET="shutdown-test-secret",
        SPOTIFY_ACCOUNTS_URL=sim_url,
        SPOTIFY_API_URL=f"{sim_url}/v1",
        SPOTIFY_REDIRECT_URI=f"http://127.0.0.1:{port}/callback",
        NOWPLAYING_SECRET_KEY="shutdown-test-secret-key-0123456789abcdef",
        NOWPLAYING_DATABASE_URL=POSTGRES_URL.rsplit("/", 1)[0] + f"/{db}",
        NOWPLAYING_REDIS_URL=REDIS_URL,
    )
    cmd = [sys.executable, "-m", "nowplaying.cli", "serve", "--port", str(port)]
    try:
        with _process(sim_cmd, tmp / "sim", _env(), sim_port) as sim:
            await _wait_up(sim, "/_control/calls")
            migrate = [sys.executable, "-m", "nowplaying.cli", "migrate"]
            await asyncio.to_thread(
                subprocess.run, migrate, cwd=tmp, env=env, check=True, capture_output=True
            )
            with _process([*cmd, "--workers", str(workers)], tmp, env, port) as served:
                await _wait_up(served)
                yield served
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        await admin.close()


@pytest.mark.slow
async def test_workers_drain_and_exit_0_on_sigterm(tmp_path: Path) -> None:
    """``--workers 2`` (PostgreSQL + Redis): SIGTERM to the supervisor drains every worker."""
    (tmp_path / "sim").mkdir()
    async with scaled_out(tmp_path, 2) as served, httpx.AsyncClient() as http:
        await _wait_log(served, "Application startup complete", 2)
        cookie = await login(http, served.base)
        viewers, tasks = await _viewers(http, f"{served.base}/api/spotify/events", cookie, 12)
        code, took = await asyncio.to_thread(served.stop)
        async with asyncio.timeout(10):
            await asyncio.gather(*tasks)
    log = served.text()
    assert code == 0, log
    assert took < EXIT_BOUND
    assert all(v.ended and v.retries[-1] in RECONNECT_MS for v in viewers), log
    assert log.count("shutdown clean") == 2, log  # one line per worker
    ended = [int(n) for n in re.findall(r"shutting down: ending (\d+) event stream", log)]
    assert len(ended) == 2 and sum(ended) == 12, log
    assert "killing it" not in log
    assert "stopped 2 worker process(es)" in log


async def _wait_log(served: Served, text: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while served.text().count(text) < count:
        assert time.monotonic() < deadline, f"not {count}x {text!r}:\n{served.text()}"
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_a_worker_that_dies_is_replaced(tmp_path: Path) -> None:
    """A worker killed outright is replaced; the supervisor keeps serving and still stops 0."""
    (tmp_path / "sim").mkdir()
    async with scaled_out(tmp_path, 2) as served, httpx.AsyncClient() as http:
        found = re.search(r"started 2 worker process\(es\): (\d+), (\d+)", served.text())
        assert found, served.text()
        await _wait_log(served, "Application startup complete", 2)  # both workers serve
        os.kill(int(found.group(1)), signal.SIGKILL)
        await _wait_log(served, "starting another", 1)
        await _wait_log(served, "Application startup complete", 3)  # and the replacement
        for _ in range(6):  # both workers answer (the kernel spreads connections)
            assert (await http.get(f"{served.base}/healthz")).status_code == 200
        code, _ = await asyncio.to_thread(served.stop)
    assert code == 0, served.text()
    assert f"worker {found.group(1)} died" in served.text()


def test_supervisor_in_process_replaces_a_dead_worker_and_stops_on_sigterm() -> None:
    """serve_workers here: 2 workers on one socket, a killed one replaced, SIGTERM ends all."""
    port = free_port()
    config = uvicorn.Config("harness.stuck_server:_app", host="127.0.0.1", port=port)
    seen: dict[str, set[int]] = {"before": set(), "after": set()}

    def drive() -> None:  # from a thread: the supervisor owns the main thread and its signals
        url = f"http://127.0.0.1:{port}/pid"
        deadline = time.monotonic() + 60
        while len(seen["before"]) < 2 and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                seen["before"].add(int(httpx.get(url, timeout=2).text))
        victim = min(seen["before"])
        os.kill(victim, signal.SIGKILL)
        while time.monotonic() < deadline and not (seen["after"] - seen["before"]):
            with contextlib.suppress(httpx.HTTPError):
                seen["after"].add(int(httpx.get(url, timeout=2).text))
        os.kill(os.getpid(), signal.SIGTERM)

    driver = threading.Thread(target=drive)
    driver.start()
    status = serve_workers(config, 2, stuck_server.worker, shutdown_seconds=2.0)
    driver.join(10)
    assert status == 0
    assert len(seen["before"]) == 2
    assert seen["after"] - seen["before"], "no replacement worker answered"
    for pid in seen["before"] | seen["after"]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # every worker has exited


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"NOWPLAYING_REDIS_URL": "redis://127.0.0.1:6379/15"}, "PostgreSQL"),
        ({"NOWPLAYING_DATABASE_URL": "postgresql://postgres@127.0.0.1/np"}, "Redis"),
        ({}, "PostgreSQL (NOWPLAYING_DATABASE_URL=postgresql://...) and Redis"),
    ],
)
def test_workers_without_postgres_and_redis_are_refused(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    missing: str,
) -> None:
    """``serve --workers 2`` that could lose a rotating refresh token exits 2 and says why."""
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith(("SPOTIFY_", "NOWPLAYING_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "cid")
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", "a-real-looking-client-secret")
    monkeypatch.setenv("NOWPLAYING_SECRET_KEY", "k" * 40)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["serve", "--workers", "2", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "refusing --workers 2" in err
    assert "rotating refresh token" in err and "grant" in err
    assert f"configure {missing}" in err and "docs/deploy.md" in err


def test_workers_in_demo_mode_are_refused(tmp_path: Path) -> None:
    """A real process: the refusal is an exit status 2 and a message, nothing is served."""
    port = free_port()
    cmd = [sys.executable, "-m", "nowplaying.cli", "serve", "--workers", "2", "--port", str(port)]
    done = subprocess.run(
        cmd, cwd=tmp_path, env=_env(), capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert b"refusing --workers 2: demo mode runs in one process" in done.stderr
