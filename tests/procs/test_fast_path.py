"""The fast path (``web/fast.py``) under ``nowplaying serve``, on the stack it picks and on the
pure-Python fallback: a real process answers the public JSON and the owner's ``/api/spotify``
from it on keep-alive connections, counts it in ``/metrics``, and still stops cleanly on
``SIGTERM`` with such a connection open."""

from __future__ import annotations

import signal
import socket

import httpx
import pytest
from harness.helpers import ONE_ADDRESS_AUDIENCE
from harness.servers import ServerProcess, nowplaying_server, sign_in
from harness.sockets import BOUND

pytestmark = pytest.mark.anyio
TOKEN = "metrics-token-for-the-fast-path-process-test"
REQUESTS = 40


def _answers(sock: socket.socket, wire: bytes, count: int) -> list[bytes]:
    """Send ``wire`` ``count`` times, one after the other's answer; each answer's head."""
    heads = []
    for _ in range(count):
        sock.sendall(wire)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "closed by the server"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += sock.recv(65536)
        heads.append(head)
    return heads


def _fast_count(server: ServerProcess, route: str) -> float:
    metrics = httpx.get(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=BOUND
    ).text
    prefix = f'nowplaying_fast_answers_total{{route="{route}"}} '
    return next(
        (float(line[len(prefix) :]) for line in metrics.splitlines() if line.startswith(prefix)),
        0.0,
    )


@pytest.mark.parametrize("stack", [[], ["--http", "h11", "--loop", "asyncio"]], ids=["auto", "h11"])
async def test_serve_answers_fast_counts_it_and_stops_clean(stack: list[str]) -> None:
    env = {
        **ONE_ADDRESS_AUDIENCE,
        "NOWPLAYING_METRICS_TOKEN": TOKEN,
        "NOWPLAYING_LOG_LEVEL": "INFO",
    }
    with nowplaying_server(extra_env=env, args=stack) as server:
        cookie = await sign_in(server.url)
        async with httpx.AsyncClient(base_url=server.url, timeout=BOUND) as http:
            published = await http.post(
                "/api/account/publish", headers={"Cookie": cookie, "Origin": server.url}
            )
        public_id = published.raise_for_status().json()["publicId"]
        host = server.url.removeprefix("http://")
        port = int(host.rsplit(":", 1)[1])
        sock = socket.create_connection(("127.0.0.1", port), timeout=BOUND)
        try:
            wire = f"GET /p/{public_id}.json HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
            heads = _answers(sock, wire, REQUESTS)
            owner = f"GET /api/spotify HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n"
            heads += _answers(sock, owner.encode(), REQUESTS)
            assert all(head.startswith(b"HTTP/1.1 200 OK\r\n") for head in heads)
            # At least one a second is the app's (each JSON answer holds for 1 s): some, not all.
            assert 0 < _fast_count(server, "/p/{public_id}.json") < REQUESTS
            assert 0 < _fast_count(server, "/api/spotify") < REQUESTS
            server.proc.send_signal(signal.SIGTERM)
            assert server.proc.wait(BOUND) == 0
            assert sock.recv(65536) == b""  # the idle keep-alive connection closed by the server
        finally:
            sock.close()
        assert "shutdown clean" in server.log.read_text(errors="replace")
