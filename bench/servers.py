"""Server processes on 127.0.0.1 for the real-time benchmarks, an HTTP sign-in, an SSE client.

Each server runs in its own process (:class:`ServerProcess`), so a load generator or the bench
itself never shares a GIL with it; it is always stopped on the way out (terminate, then kill).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from harness.helpers import consent

ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 20.0
CONTROL = "/spotify-sim/_control/users/demo/player"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
def _run(
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
        _wait_ready(server, START_SECONDS * (10 if wrapper else 1))
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_ready(server: ServerProcess, seconds: float = START_SECONDS) -> None:
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
        with _run([*cmd, "--port", str(port)], env, Path(tmp), port, wrapper) as server:
            yield server


@contextlib.contextmanager
def bare_server(
    payload: Mapping[str, Any] | bytes,
    wrapper: Sequence[str] = (),
    server: str = "uvicorn",
    options: Sequence[str] = (),
) -> Iterator[ServerProcess]:
    """:mod:`bench.bare` under ``server`` (``uvicorn`` with the settings ``nowplaying serve``
    uses, or ``granian``), with more ``options`` (``--http h11``); ``payload`` is the body."""
    port = free_port()
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with tempfile.TemporaryDirectory(prefix="np-bench-bare-") as tmp:
        env = {"BENCH_PAYLOAD": body.decode(), "PYTHONPATH": str(ROOT)}
        where = ["--host", "127.0.0.1", "--port", str(port)]
        if server == "granian":
            cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", *where]
            cmd += ["--workers", "1", "--no-access-log", "--log-level", "warning"]
        else:
            cmd = [sys.executable, "-m", "uvicorn", "--factory", *where, "--no-access-log"]
            cmd += ["--log-level", "warning", "--no-proxy-headers", "--no-server-header"]
        with _run([*cmd, *options, "bench.bare:create"], env, Path(tmp), port, wrapper) as srv:
            yield srv


NGINX_STATIC = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
{locations}
    }}
}}
"""


@contextlib.contextmanager
def static_nginx(files: Mapping[str, tuple[bytes, str]]) -> Iterator[ServerProcess]:
    """Debian's nginx (one worker, no access log) serving each ``path: (body, content type)``
    as a static file: what the machine can do with the same bytes."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise FileNotFoundError("nginx is not installed (apt-get install nginx)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="np-bench-nginx-") as tmp:
        Path(tmp).chmod(0o755)  # nginx's worker runs as another user when started by root
        locations = []
        for i, (path, (body, media_type)) in enumerate(files.items()):
            (Path(tmp) / f"{i}.body").write_bytes(body)
            locations.append(
                f"        location = {path} {{ types {{ }} default_type {media_type.split(';')[0]};"
                f" alias {tmp}/{i}.body; }}"
            )
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_STATIC.format(dir=tmp, port=port, locations="\n".join(locations)))
        with _run([binary, "-p", tmp, "-c", str(conf)], {}, Path(tmp), port) as srv:
            for path, (body, _) in files.items():
                if httpx.get(srv.url + path).content != body:
                    raise RuntimeError(f"nginx did not serve the bytes of {path}")
            yield srv


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
    jar: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base_url, follow_redirects=False, timeout=10) as http:
        login = await http.get("/login")
        if login.status_code != 302:
            raise RuntimeError(f"/login answered {login.status_code}")
        _keep_cookies(jar, login)
        async with httpx.AsyncClient(follow_redirects=False, timeout=10) as browser:
            agreed = await consent(browser, login.headers["location"])
        if agreed.status_code not in (302, 303):
            raise RuntimeError(f"consent answered {agreed.status_code}")
        back = urlsplit(agreed.headers["location"])
        done = await http.get(f"{back.path}?{back.query}", headers={"Cookie": _cookie_header(jar)})
        if done.status_code != 303:
            raise RuntimeError(f"/callback answered {done.status_code}")
        _keep_cookies(jar, done)
    session = {k: v for k, v in jar.items() if k.endswith("np_session")}
    if not session:
        raise RuntimeError("no session cookie after /callback")
    return _cookie_header(session)


# -- a small SSE client on a raw socket ----------------------------------------------------------


@dataclass
class SSEEvent:
    arrived: float
    """``time.time()`` when the event's last byte was read."""
    id: str | None
    data: dict[str, Any]


@dataclass
class SSEClient:
    """One ``GET /api/spotify/events`` on its own connection; decodes chunked SSE."""

    host: str
    port: int
    cookie: str
    events: list[SSEEvent] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _writer: asyncio.StreamWriter | None = None

    async def run(self) -> None:
        """Read events until the server closes the stream or the task is cancelled."""
        reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._writer.write(
            (
                "GET /api/spotify/events HTTP/1.1\r\n"
                f"Host: {self.host}:{self.port}\r\n"
                f"Cookie: {self.cookie}\r\n"
                "Accept: text/event-stream\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise RuntimeError(f"SSE answered {status.decode()}")
        buffer = ""
        async for chunk in _chunks(reader):
            buffer += chunk
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                self._parse(block)

    def _parse(self, block: str) -> None:
        event_id, data = None, []
        for line in block.split("\n"):
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            self.events.append(SSEEvent(time.time(), event_id, json.loads("\n".join(data))))
            self.arrived.set()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[str]:
    """The bodies of an HTTP/1.1 chunked transfer, as text."""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            return
        body = await reader.readexactly(size + 2)
        yield body[:-2].decode()
