"""``nowplaying serve`` runs under the connection guard: its deadlines and caps come from the
settings, and ``/metrics`` counts what it closed (a real process on loopback)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from harness.helpers import stop
from harness.live_server import free_port
from harness.sockets import closed_by_peer, connect, get

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-for-tests"


def test_serve_closes_a_silent_connection_and_an_address_over_its_cap(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "NOWPLAYING_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nowplaying.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env={
            **env,
            "PYTHONPATH": str(ROOT),
            "NOWPLAYING_HEADER_SECONDS": "0.5",
            "NOWPLAYING_CONNECTIONS_PER_ADDRESS": "4",
            "NOWPLAYING_METRICS_TOKEN": TOKEN,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while b"200 OK" not in _healthz(port):
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        with connect(port, "127.0.0.3") as silent:
            assert closed_by_peer(silent)
        held = [connect(port, "127.0.0.4") for _ in range(4)]
        with connect(port, "127.0.0.4") as extra:
            assert closed_by_peer(extra)
        assert b"200 OK" in get(port, "127.0.0.5", "/healthz")
        metrics = httpx.get(
            f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
        ).text
        assert 'nowplaying_edge_closed_total{reason="address_cap"} 1.0' in metrics
        assert 'nowplaying_edge_closed_total{reason="header_deadline"}' in metrics
        for sock in held:
            sock.close()
    finally:
        stop(proc, 20)


def _healthz(port: int) -> bytes:
    try:
        return get(port, path="/healthz")
    except OSError:
        return b""
