"""A redis-server of a test's own on a free loopback port, to kill and start again (the shared
Redis is never stopped)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from harness.live_server import free_port


class PrivateRedis:
    """``redis-server --port <free>`` without persistence; :meth:`kill` and :meth:`start`."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, seconds: float = 10.0) -> None:
        """Start it and wait (bounded) until it accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server on {self.port} not up within {seconds:g}s")

    def kill(self) -> None:
        """SIGKILL: gone at once, with everything it held."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
