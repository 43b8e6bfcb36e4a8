"""The servers the benchmarks compare against (bare Starlette, static nginx) and an SSE client.

Each runs in its own process (:class:`harness.servers.ServerProcess`, where ``nowplaying serve``
and the HTTP sign-in live too), so a load generator never shares a GIL with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from harness.live_server import free_port
from harness.servers import ServerProcess, run

ROOT = Path(__file__).resolve().parent.parent


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
        with run([*cmd, *options, "bench.bare:create"], env, Path(tmp), port, wrapper) as srv:
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
        with run([binary, "-p", tmp, "-c", str(conf)], {}, Path(tmp), port) as srv:
            for path, (body, _) in files.items():
                if httpx.get(srv.url + path).content != body:
                    raise RuntimeError(f"nginx did not serve the bytes of {path}")
            yield srv


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
