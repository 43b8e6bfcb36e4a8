"""A real server on a loopback socket, in a background thread, for browser and third-party tests."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is bound to, below the kernel's ephemeral range.

    The kernel's own pick (a bind to port 0) is from that range, where every outgoing
    connection on the machine takes its local port too: one taking the port between the pick
    and a server's bind made the server exit with "address already in use" (seen once in ten
    runs of test_rolling_restart on a machine running other tests)."""
    low = _ephemeral_low()
    for _ in range(200):
        port = _PORTS.randrange(FIRST_PORT, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # the range below is full: the kernel's pick after all
        s.bind(("127.0.0.1", 0))
        picked: int = s.getsockname()[1]
        return picked


FIRST_PORT = 10000
"""The lowest port :func:`free_port` hands out (below it: well-known and registered services)."""
_PORTS = random.Random()


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux's default 32768 elsewhere)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return max(FIRST_PORT + 1000, int(f.read().split()[0]))
    except (OSError, ValueError, IndexError):
        return 32768


@contextlib.contextmanager
def serve(app: ASGIApp, port: int, **options: Any) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1:``port`` until the block ends; yields the base URL.
    ``options`` are uvicorn's (e.g. ``http=`` a protocol class)."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, **{"log_level": "warning", "lifespan": "on", **options}
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
