"""Fan-out limits with a real process: the descriptor limit is raised and logged at start, and
viewers past it are refused with a 503 instead of hanging unanswered."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness.helpers import ONE_ADDRESS_AUDIENCE
from harness.live_server import free_port
from harness.servers import ServerProcess, sign_in, wait_ready

from nowplaying.web.sse import SPARE_FILES

pytestmark = pytest.mark.anyio

LIMIT = 256
VIEWERS = 400
CLOSED = 0
"""A viewer's status when the server closed its connection before any answer."""


@pytest.fixture
def low_limit_server() -> Iterator[ServerProcess]:
    """``nowplaying serve`` in demo mode whose soft and hard RLIMIT_NOFILE are 256."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="np-fanout-") as tmp:
        env = {
            **os.environ,
            "SPOTIFY_CLIENT_ID": "",
            "SPOTIFY_REDIRECT_URI": f"http://127.0.0.1:{port}/callback",
            "NOWPLAYING_DATABASE_URL": f"sqlite:///{tmp}/np.sqlite3",
            **ONE_ADDRESS_AUDIENCE,
            "NOWPLAYING_LOG_LEVEL": "INFO",
        }
        cmd = [sys.executable, "-m", "nowplaying.cli", "serve", "--host", "127.0.0.1"]
        log = Path(tmp) / "server.log"

        def low() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))

        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*cmd, "--port", str(port)],
                env=env,
                cwd=tmp,
                stdout=out,
                stderr=out,
                preexec_fn=low,  # noqa: PLW1509 - only setrlimit, before exec
            )
        server = ServerProcess(f"http://127.0.0.1:{port}", proc, log)
        try:
            wait_ready(server)
            yield server
        finally:
            proc.terminate()
            proc.wait(timeout=15)


async def _viewer(port: int, path: str, status: asyncio.Future[int], hold: asyncio.Event) -> None:
    """Open one stream, report its status once the first event (or the refusal) has arrived,
    and keep it open until ``hold`` is set; :data:`CLOSED` when the server closed it at once
    (the connection guard's descriptor reserve)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            status.set_result(CLOSED)
            return
        code = int(head.split(b" ", 2)[1])
        if code == 200:
            while b"data: " not in await reader.readuntil(b"\n\n"):
                pass
        status.set_result(code)
        await hold.wait()
    finally:
        writer.close()


async def test_descriptor_limit_is_logged_and_viewers_past_it_are_refused(
    low_limit_server: ServerProcess,
) -> None:
    """Under a hard limit of 256 the log says how many viewers fit; of 400 connects, that many
    are served and every other one is refused at once (a 503, or closed by the connection
    guard's descriptor reserve), none is left hanging."""
    server = low_limit_server
    expected = LIMIT - SPARE_FILES
    text = server.log.read_text()
    assert f"file descriptors: {LIMIT} (about {expected} viewers)" in text
    cookie = await sign_in(server.url)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        published = await http.post(
            "/api/account/publish", headers={"Cookie": cookie, "Origin": server.url}
        )
        path = f"/p/{published.json()['publicId']}/events"
    port = int(server.url.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    hold = asyncio.Event()
    answers: list[asyncio.Future[int]] = [loop.create_future() for _ in range(VIEWERS)]
    opened = [asyncio.create_task(_viewer(port, path, a, hold)) for a in answers]
    try:
        _, pending = await asyncio.wait(answers, timeout=60)
        assert not pending, f"{len(pending)} of {VIEWERS} connects left unanswered"
        statuses = [a.result() for a in answers]
    finally:
        hold.set()
        for t in opened:
            t.cancel()
        await asyncio.gather(*opened, return_exceptions=True)
    served, refused = statuses.count(200), statuses.count(503) + statuses.count(CLOSED)
    assert served + refused == VIEWERS
    assert expected - 10 <= served <= expected
    assert refused >= VIEWERS - expected
    assert re.search(r"file descriptors: \d+", text)
