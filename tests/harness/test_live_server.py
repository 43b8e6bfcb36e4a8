"""harness/live_server.py: ports for the servers tests start."""

from __future__ import annotations

import socket

from harness.live_server import FIRST_PORT, _ephemeral_low, free_port


def test_free_ports_are_below_the_ephemeral_range_and_free() -> None:
    """No outgoing connection (which takes its local port from the ephemeral range) can take a
    port handed out before the server that asked for it binds it."""
    low = _ephemeral_low()
    ports = [free_port() for _ in range(20)]
    assert all(FIRST_PORT <= p < low for p in ports), ports
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
